"""The BLIP family's part of ``convert_parity.py``: BLIP (captioning, retrieval), BLIP-2 and
InstructBLIP (decoder-only and encoder-decoder LLMs), MiniGPT-4's projector file assembled with
a BLIP-2 checkpoint and a LLaMA. Each function saves a random reference as its library saves it,
loads it through ``mmzoo.convert.load_pretrained`` and returns max abs differences in fp32,
whether greedy tokens agree, and whether export then re-import gives back bit-equal tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
)

from mmzoo.convert import export_model, load_pretrained
from mmzoo.data.conversation import expand_image_token
from mmzoo.data.tokenizer import build_word_tokenizer

GREEDY = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False)
QFORMER = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, queries=4),
    # BLIP-2's own Q-Former
    "base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, queries=32
    ),
}


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def identical(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def scrambled(model: nn.Module) -> nn.Module:
    """Noise on every parameter, so no tensor keeps an init value a wrong mapping could match."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _specials(tok: Any) -> dict[str, int]:
    return dict(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )


def _llm(kind: str, size: dict, tok: Any) -> dict[str, Any]:
    llm, ids = size["llm"], _specials(tok)
    if kind == "t5":
        return dict(
            model_type="t5",
            d_model=llm["hidden_size"],
            d_ff=llm["intermediate_size"],
            d_kv=llm["hidden_size"] // llm["num_attention_heads"],
            num_layers=llm["num_hidden_layers"],
            num_heads=llm["num_attention_heads"],
            decoder_start_token_id=tok.pad_token_id,
            **ids,
        )
    if kind == "opt":
        return dict(
            model_type="opt",
            hidden_size=llm["hidden_size"],
            ffn_dim=llm["intermediate_size"],
            num_hidden_layers=llm["num_hidden_layers"],
            num_attention_heads=llm["num_attention_heads"],
            word_embed_proj_dim=llm["hidden_size"],
            max_position_embeddings=512,
            **ids,
        )
    return dict(llm, model_type="llama", max_position_embeddings=512, **ids)


def blip_parity(tmp: Path, size: dict, words: list[str]) -> dict:
    tok = build_word_tokenizer(words, extra_special_tokens=("<image>", "[DEC]", "[ENC]"))
    dec, enc = tok.convert_tokens_to_ids(["[DEC]", "[ENC]"])
    text = dict(size["text"], max_position_embeddings=32, **_specials(tok))
    text.update(bos_token_id=dec, sep_token_id=tok.eos_token_id, label_smoothing=0.1)
    config = BlipConfig(text_config=text, vision_config=size["vision"], image_text_hidden_size=size["embed"])
    batch = tok(
        ["a photo of the red circle", "the cat", "dog", "what is it"], padding=True, return_tensors="pt"
    )
    ids, mask = batch["input_ids"], batch["attention_mask"]
    n = size["vision"]["image_size"]
    pixels = torch.randn(4, 3, n, n)
    results = {}
    for name, cls in (("captioning", BlipForConditionalGeneration), ("retrieval", BlipForImageTextRetrieval)):
        scrambled(cls(config)).save_pretrained(tmp / f"blip_{name}")
        tok.save_pretrained(tmp / f"blip_{name}")
        reference = cls.from_pretrained(tmp / f"blip_{name}").eval()
        zoo = load_pretrained(tmp / f"blip_{name}").model
        first = ids.clone()
        with torch.no_grad():
            if name == "captioning":
                first[:, 0] = dec
                ref = reference(
                    pixel_values=pixels,
                    input_ids=first,
                    attention_mask=mask,
                    labels=first.masked_fill(mask == 0, -100),
                )
                logits = zoo.text.decode(ids, mask, zoo.encoder(pixels))
                from mmzoo.objectives.lm import decoder_targets, lm_loss

                loss = lm_loss(logits, decoder_targets(ids, mask, dec)[1], zoo.label_smoothing)
                prompt = tok(["a photo of"] * 4, return_tensors="pt")["input_ids"]
                ref_new = reference.generate(pixels, input_ids=prompt.clone(), **GREEDY)[
                    :, prompt.shape[1] - 1 :
                ]
                out = {
                    "decoder_logits": diff(logits[mask.bool()], ref.logits[mask.bool()]),
                    "loss": diff(loss, ref.loss),
                    "greedy_8_tokens_equal": torch.equal(
                        ref_new, zoo.generate(pixels, prompt[:, :-1], **GREEDY)
                    ),
                }
            else:
                first[:, 0] = enc
                itc = reference(input_ids=ids, pixel_values=pixels, attention_mask=mask, use_itm_head=False)
                itm = reference(input_ids=first, pixel_values=pixels, attention_mask=mask)
                out = {
                    "itc_scores": diff(
                        zoo.encode_image(pixels) @ zoo.encode_text(ids, mask).T, itc.itm_score
                    ),
                    "itm_logits": diff(zoo.itm_logits(zoo.encoder(pixels), ids, mask), itm.itm_score),
                }
        layout = BlipForConditionalGeneration if name == "captioning" else BlipForImageTextRetrieval
        export_model(zoo, tmp / f"blip_{name}_export", layout=layout.__name__)
        out["export_reimport_identical"] = identical(zoo, load_pretrained(tmp / f"blip_{name}_export").model)
        results[f"Blip{'ForConditionalGeneration' if name == 'captioning' else 'ForImageTextRetrieval'}"] = (
            out
        )
    return results


def _vlm_inputs(zoo: Any, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tok = zoo.llm.tokenizer
    rows = [
        expand_image_token(tok(t)["input_ids"], zoo.image_token_id, zoo.num_image_tokens)
        for t in ("<image> what is it ?", "a photo of <image> the red")
    ]
    width = max(map(len, rows))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])  # left-padded
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return torch.randn(2, 3, n, n), ids, mask


def vlm_parity(tmp: Path, size: dict, words: list[str], family: str, llm: str) -> dict:
    """``family``: blip2 | instructblip; ``llm``: opt | llama | t5."""
    tok, qtok = build_word_tokenizer(words, add_eos=llm == "t5"), build_word_tokenizer(words)
    q = dict(QFORMER[size["name"]])
    queries = q.pop("queries")
    common = dict(
        vision_config=size["vision"],
        text_config=_llm(llm, size, tok),
        num_query_tokens=queries,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    if family == "blip2":
        cls, config = Blip2ForConditionalGeneration, Blip2Config(qformer_config=q, **common)
    else:
        cls = InstructBlipForConditionalGeneration
        config = InstructBlipConfig(qformer_config=dict(q, vocab_size=len(qtok), pad_token_id=0), **common)
    d = tmp / f"{family}_{llm}"
    scrambled(cls(config)).save_pretrained(d)
    tok.save_pretrained(d)
    qtok.save_pretrained(d / "qformer_tokenizer")
    reference = cls.from_pretrained(d).eval()
    zoo = load_pretrained(d).model
    pixels, ids, mask = _vlm_inputs(zoo, size["vision"]["image_size"])
    ref_kw: dict[str, Any] = {}
    zoo_kw: dict[str, Any] = {}
    if family == "instructblip":
        b = qtok(["what is it ?", "the red circle"], padding=True, return_tensors="pt")
        ref_kw = {"qformer_input_ids": b["input_ids"], "qformer_attention_mask": b["attention_mask"]}
        zoo_kw = {"instruction_ids": b["input_ids"], "instruction_mask": b["attention_mask"]}
    labels = (
        tok(["red circle", "a dog"], padding=True, return_tensors="pt")["input_ids"] if llm == "t5" else None
    )
    with torch.no_grad():
        ref = reference(pixel_values=pixels, input_ids=ids, attention_mask=mask, labels=labels, **ref_kw)
        out = zoo(pixels, ids, mask, labels, **zoo_kw)
    ref_new = reference.generate(pixel_values=pixels, input_ids=ids, attention_mask=mask, **ref_kw, **GREEDY)
    ref_new = ref_new[:, 1:] if llm == "t5" else ref_new[:, ids.shape[1] :]
    result = {
        "logits": diff(out.logits, ref.logits)
        if llm == "t5"
        else diff(out.logits[mask.bool()], ref.logits[mask.bool()])
    }
    if llm == "t5":
        result["loss"] = diff(out.loss, ref.loss)
    result["greedy_8_tokens_equal"] = torch.equal(
        ref_new, zoo.generate(pixels, ids, mask, **zoo_kw, **GREEDY)
    )
    export_model(zoo, tmp / f"{family}_{llm}_export")
    result["export_reimport_identical"] = identical(
        zoo, load_pretrained(tmp / f"{family}_{llm}_export").model
    )
    return result


def minigpt4_parity(tmp: Path, size: dict, words: list[str]) -> dict:
    """MiniGPT-4's llama_proj file + the BLIP-2 (OPT) checkpoint saved above + a LLaMA, against the
    original composition by hand: ViT -> Q-Former -> llama_proj -> LLaMA."""
    tok = build_word_tokenizer(words, add_eos=False)
    llm = scrambled(
        LlamaForCausalLM(
            LlamaConfig(**{k: v for k, v in _llm("llama", size, tok).items() if k != "model_type"})
        )
    ).eval()
    llm.save_pretrained(tmp / "minigpt4_llm")
    tok.save_pretrained(tmp / "minigpt4_llm")
    blip2 = Blip2ForConditionalGeneration.from_pretrained(tmp / "blip2_opt").eval()
    llama_proj = nn.Linear(blip2.config.qformer_config.hidden_size, llm.config.hidden_size)
    torch.save(
        {"model": {f"llama_proj.{k}": v for k, v in llama_proj.state_dict().items()}}, tmp / "minigpt4.pth"
    )
    zoo = load_pretrained(
        tmp / "minigpt4.pth", blip2=str(tmp / "blip2_opt"), llm=str(tmp / "minigpt4_llm")
    ).model
    pixels, ids, mask = _vlm_inputs(zoo, size["vision"]["image_size"])
    with torch.no_grad():
        image = blip2.vision_model(pixels).last_hidden_state
        queries = blip2.qformer(
            query_embeds=blip2.query_tokens.expand(2, -1, -1), encoder_hidden_states=image
        )
        visual = llama_proj(queries.last_hidden_state)  # (B, Q, D_llm)
        embeds = llm.get_input_embeddings()(ids.masked_fill(ids == zoo.image_token_id, 0))
        embeds[ids == zoo.image_token_id] = visual.reshape(-1, visual.shape[-1])
        ref = llm(inputs_embeds=embeds, attention_mask=mask).logits
        out = zoo(pixels, ids, mask).logits
        features = diff(zoo.visual_embeds(pixels), visual)
    return {
        "projected_features": features,
        "logits": diff(out[mask.bool()], ref[mask.bool()]),
        "greedy_8_tokens_equal": torch.equal(
            llm.generate(inputs_embeds=embeds, attention_mask=mask, **GREEDY),
            zoo.generate(pixels, ids, mask, **GREEDY),
        ),
    }


def blip_family_parity(tmp: Path, size: dict, words: list[str]) -> dict:
    results = blip_parity(tmp, size, words)
    for family, llm in (("blip2", "opt"), ("blip2", "t5"), ("instructblip", "llama"), ("instructblip", "t5")):
        cls = "Blip2ForConditionalGeneration" if family == "blip2" else "InstructBlipForConditionalGeneration"
        results[f"{cls} ({llm})"] = vlm_parity(tmp, size, words, family, llm)
    results["minigpt4 (llama_proj file + BLIP-2 + LLaMA)"] = minigpt4_parity(tmp, size, words)
    return results
