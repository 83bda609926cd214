"""Parity of the zoo's imported models with the reference implementations, as numbers.

    python benchmarks/convert_parity.py [--size tiny|base]

Random reference models (``tiny``: test sizes; ``base``: CLIP ViT-B/32 widths, and a LLaVA
of a CLIP-B/32 tower with a 4-layer 1024-wide LLaMA; the BLIP family's are in
``convert_parity_blip.py``: BLIP-2's own Q-Former size at ``base``) are saved as their
libraries save them, loaded through ``mmzoo.convert.load_pretrained`` and run on the same
inputs in fp32. Prints the max abs difference of each output, whether greedy generation
agrees, and whether export then re-import gives back bit-equal tensors.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import open_clip
import torch
from convert_parity_blip import blip_family_parity
from torch import nn
from transformers import CLIPConfig, CLIPModel, LlavaConfig, LlavaForConditionalGeneration

from mmzoo.convert import export_model, load_pretrained, load_projector
from mmzoo.data.conversation import expand_image_token
from mmzoo.data.tokenizer import build_word_tokenizer

WORDS = "a photo of the red blue green circle square triangle cat dog what is it".split()
SIZES = {
    "tiny": dict(
        vision=dict(
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=3,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        llm=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
        ),
        embed=16,
    ),
    "base": dict(
        vision=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            image_size=224,
            patch_size=32,
        ),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        llm=dict(
            hidden_size=1024,
            intermediate_size=2816,
            num_hidden_layers=4,
            num_attention_heads=16,
            num_key_value_heads=16,
        ),
        embed=512,
    ),
}


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def identical(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def clip_parity(tmp: Path, size: dict, tok) -> dict:
    ids = dict(
        vocab_size=len(tok), pad_token_id=0, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id
    )
    config = CLIPConfig(
        text_config=dict(size["text"], max_position_embeddings=32, **ids),
        vision_config=size["vision"],
        projection_dim=size["embed"],
    )
    CLIPModel(config).save_pretrained(tmp / "clip")
    tok.save_pretrained(tmp / "clip")
    reference = CLIPModel.from_pretrained(tmp / "clip").eval()
    zoo = load_pretrained(tmp / "clip").model
    n = size["vision"]["image_size"]
    pixels, batch = (
        torch.randn(4, 3, n, n),
        tok(["a photo of a cat", "the red circle", "dog", "what is it"], padding=True, return_tensors="pt"),
    )
    with torch.no_grad():
        ref = reference(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=pixels
        )
        out = zoo(pixels, batch["input_ids"], batch["attention_mask"])
    export_model(zoo, tmp / "clip_export")
    return {
        "image_embeds": diff(out.image_embeds, ref.image_embeds),
        "text_embeds": diff(out.text_embeds, ref.text_embeds),
        "logits_per_image": diff(
            out.logit_scale * out.image_embeds @ out.text_embeds.T, ref.logits_per_image
        ),
        "export_reimport_identical": identical(zoo, load_pretrained(tmp / "clip_export").model),
    }


def llava_parity(tmp: Path, size: dict, tok) -> dict:
    ids = dict(
        vocab_size=len(tok), pad_token_id=0, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id
    )
    config = LlavaConfig(
        text_config=dict(size["llm"], model_type="llama", max_position_embeddings=512, **ids),
        vision_config=dict(size["vision"], model_type="clip_vision_model"),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    LlavaForConditionalGeneration(config).save_pretrained(tmp / "llava")
    tok.save_pretrained(tmp / "llava")
    reference = LlavaForConditionalGeneration.from_pretrained(tmp / "llava").eval()
    zoo = load_pretrained(tmp / "llava").model
    row = expand_image_token(
        tok("<image> what is the red circle ?")["input_ids"], zoo.image_token_id, zoo.num_image_tokens
    )
    input_ids = torch.tensor([row, row])
    mask = torch.ones_like(input_ids)
    n = size["vision"]["image_size"]
    pixels = torch.randn(2, 3, n, n)
    greedy = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False)
    with torch.no_grad():
        ref = reference(input_ids=input_ids, attention_mask=mask, pixel_values=pixels).logits
        out = zoo(pixels, input_ids, mask).logits
    ref_new = reference.generate(input_ids=input_ids, attention_mask=mask, pixel_values=pixels, **greedy)
    zoo_new = zoo.generate(pixels, input_ids, mask, **greedy)
    export_model(zoo, tmp / "llava_export")
    return {
        "logits_all_positions": diff(out, ref),
        "greedy_8_tokens_equal": torch.equal(ref_new[:, len(row) :], zoo_new),
        "export_reimport_identical": identical(zoo, load_pretrained(tmp / "llava_export").model),
    }


def open_clip_parity(tmp: Path, size: dict, tok) -> dict:
    v, t = size["vision"], size["text"]
    cfg = {
        "embed_dim": size["embed"],
        "quick_gelu": True,
        "vision_cfg": {
            "image_size": v["image_size"],
            "patch_size": v["patch_size"],
            "width": v["hidden_size"],
            "layers": v["num_hidden_layers"],
            "head_width": v["hidden_size"] // v["num_attention_heads"],
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": len(tok),
            "width": t["hidden_size"],
            "heads": t["num_attention_heads"],
            "layers": t["num_hidden_layers"],
            "pool_type": "eos",
            "eos_id": tok.eos_token_id,
        },
    }
    (tmp / "mmzoo-parity.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp / "mmzoo-parity.json")
    reference = open_clip.create_model("mmzoo-parity").eval()
    torch.save(reference.state_dict(), tmp / "open_clip.pt")
    tok.save_pretrained(tmp / "tok")
    zoo = load_pretrained(
        "open_clip:mmzoo-parity", pretrained=str(tmp / "open_clip.pt"), tokenizer=str(tmp / "tok")
    ).model
    n = v["image_size"]
    pixels = torch.randn(4, 3, n, n)
    batch = tok(
        ["a photo of a cat", "the red circle", "dog", "what is it"],
        padding="max_length",
        max_length=16,
        return_tensors="pt",
    )
    with torch.no_grad():
        out = zoo(pixels, batch["input_ids"], batch["attention_mask"])
        return {
            "image_features": diff(out.image_embeds, reference.encode_image(pixels, normalize=True)),
            "text_features": diff(out.text_embeds, reference.encode_text(batch["input_ids"], normalize=True)),
            "logit_scale": diff(out.logit_scale, reference.logit_scale.exp()),
        }


def projector_parity(tmp: Path, size: dict, tok) -> dict:
    """LLaVA mlp2x_gelu mm_projector.bin into the zoo LLaVA imported above (its bridge is depth 2)."""
    zoo = load_pretrained(tmp / "llava").model
    dv, dl = size["vision"]["hidden_size"], size["llm"]["hidden_size"]
    mm_projector = nn.Sequential(nn.Linear(dv, dl), nn.GELU(), nn.Linear(dl, dl))
    torch.save(
        {f"model.mm_projector.{k}": v for k, v in mm_projector.state_dict().items()}, tmp / "mm_projector.bin"
    )
    load_projector(zoo, tmp / "mm_projector.bin")
    tokens = torch.randn(2, 49, dv)
    with torch.no_grad():
        return {"llava_mm_projector_features": diff(zoo.bridge(tokens), mm_projector(tokens))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    args = parser.parse_args()
    torch.manual_seed(0)
    tok = build_word_tokenizer(WORDS, add_eos=True)
    llm_tok = build_word_tokenizer(WORDS, add_eos=False)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        size = dict(SIZES[args.size], name=args.size)
        results["CLIPModel"] = clip_parity(tmp, size, tok)
        results["open_clip"] = open_clip_parity(tmp, size, tok)
        results["LlavaForConditionalGeneration"] = llava_parity(tmp, size, llm_tok)
        results["projectors"] = projector_parity(tmp, size, llm_tok)
        results.update(blip_family_parity(tmp, size, WORDS))
    print(json.dumps({"size": args.size, **results}, indent=2))


if __name__ == "__main__":
    main()
