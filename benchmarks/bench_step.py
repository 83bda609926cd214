"""Training-step cost of mmzoo's compositions against the bare transformers models, side by side.

    python benchmarks/bench_step.py [--device cpu|cuda] [--steps 20] [--size small|base] [--bf16] [--compile] [--threads N]

1. CLIP: mmzoo's DualEncoder (transformers CLIP towers + bridge + itc_loss) vs transformers'
   ``CLIPModel(return_loss=True)`` with the same tower configs, same batch.
2. LLaVA: mmzoo's VisionLanguageModel step (frozen encoder, linear bridge, visual tokens merged
   into a frozen LLM, masked LM loss) vs the bare ``LlamaForCausalLM`` step on a sequence of the
   same length (what the LLM costs alone). The ratio is the price of the composition, and the
   frozen encoder's forward, timed alone in turn, is work the bare LLM does not do: the
   second LLaVA line takes it out.
3. ``--compile``: each mmzoo model once more with its parts compiled (``compile.enabled=true``),
   timed in the same turns.
The sides of a pair take turns step by step (after 3 warm-up steps each). Prints median
milliseconds per step and the ratios.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from transformers import CLIPConfig, CLIPModel, LlamaConfig, LlamaForCausalLM

from mmzoo.components.bridges import Bridge
from mmzoo.components.encoders import TransformersVisionEncoder
from mmzoo.components.llm import LanguageModel
from mmzoo.components.text import TransformersTextEncoder
from mmzoo.data.tokenizer import shapes_tokenizer
from mmzoo.lit.base import compile_parts
from mmzoo.models.dual_encoder import DualEncoder
from mmzoo.models.vision_language import VisionLanguageModel
from mmzoo.objectives import itc_loss

SIZES = {
    "small": dict(hidden=128, layers=2, heads=2, image=32, patch=8, batch=64, text=24, llm_hidden=128, llm_layers=2),
    "base": dict(hidden=768, layers=12, heads=12, image=224, patch=16, batch=32, text=32, llm_hidden=2048, llm_layers=8),
}


def interleaved(steps_by_name: dict[str, Callable[[], None]], steps: int, device: str) -> dict[str, float]:
    """Median ms/step of each, taking turns step by step (the order reversed every other step),
    so that a machine shared with other work slows them alike."""
    for _ in range(3):
        for step in steps_by_name.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps_by_name}
    for i in range(steps):
        for name in list(steps_by_name)[:: 1 if i % 2 == 0 else -1]:
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            steps_by_name[name]()
            if device == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def clip_pair(s: dict, device: str, dtype: torch.dtype, compiled: bool = False):
    tok = shapes_tokenizer()
    vision = dict(hidden_size=s["hidden"], intermediate_size=4 * s["hidden"], num_hidden_layers=s["layers"],
                  num_attention_heads=s["heads"], image_size=s["image"], patch_size=s["patch"])
    text = dict(hidden_size=s["hidden"], intermediate_size=4 * s["hidden"], num_hidden_layers=s["layers"],
                num_attention_heads=s["heads"], vocab_size=len(tok), max_position_embeddings=77,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    bare = CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=s["hidden"])).to(device, dtype)
    ours = DualEncoder(
        TransformersVisionEncoder(config={"model_type": "clip_vision_model", **vision}),
        TransformersTextEncoder(config={"model_type": "clip_text_model", **text}, tokenizer=tok),
        lambda in_dim, out_dim: Bridge(in_dim, out_dim, bias=False),
        embed_dim=s["hidden"],
    ).to(device, dtype)
    px = torch.randn(s["batch"], 3, s["image"], s["image"], device=device, dtype=dtype)
    ids = torch.randint(5, len(tok), (s["batch"], s["text"]), device=device)
    ids[:, -1] = tok.eos_token_id
    mask = torch.ones_like(ids)
    opt_bare = torch.optim.AdamW(bare.parameters())

    def step_bare() -> None:
        loss = bare(input_ids=ids, pixel_values=px, attention_mask=mask, return_loss=True).loss
        loss.backward()
        opt_bare.step()
        opt_bare.zero_grad()

    def step_of(model: DualEncoder) -> Callable[[], None]:
        opt = torch.optim.AdamW(model.parameters())

        def step() -> None:
            out = model(px, ids, mask)
            itc_loss(out.image_embeds, out.text_embeds, out.logit_scale).backward()
            opt.step()
            opt.zero_grad()

        return step

    return {"bare": step_bare, "ours": step_of(ours), **with_compiled(ours, step_of, compiled)}


def llava_pair(s: dict, device: str, dtype: torch.dtype, compiled: bool = False):
    tok = shapes_tokenizer(add_eos=False)
    llm_cfg = dict(hidden_size=s["llm_hidden"], intermediate_size=4 * s["llm_hidden"], num_hidden_layers=s["llm_layers"],
                   num_attention_heads=max(2, s["llm_hidden"] // 64), max_position_embeddings=1024)
    vision = dict(hidden_size=s["hidden"], intermediate_size=4 * s["hidden"], num_hidden_layers=s["layers"],
                  num_attention_heads=s["heads"], image_size=s["image"], patch_size=s["patch"])
    encoder = TransformersVisionEncoder(config={"model_type": "clip_vision_model", **vision}, layer=-2, tokens="patch")
    llm = LanguageModel(config={"model_type": "llama", **llm_cfg}, tokenizer=tok)
    image_id = tok.convert_tokens_to_ids("<image>")
    ours = VisionLanguageModel(encoder, lambda in_dim, out_dim: Bridge(in_dim, out_dim), llm, image_id).to(device, dtype)
    ours.encoder.requires_grad_(False)
    ours.llm.requires_grad_(False)
    ours.encoder.eval()
    ours.llm.eval()
    n_img, n_text = ours.num_image_tokens, s["text"]
    b = s["batch"]
    ids = torch.randint(5, len(tok), (b, n_img + n_text), device=device)
    ids[:, 1 : 1 + n_img] = image_id
    labels = ids.clone()
    labels[:, : 1 + n_img + n_text // 2] = -100
    mask = torch.ones_like(ids)
    px = torch.randn(b, 3, s["image"], s["image"], device=device, dtype=dtype)

    bare = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), **llm_cfg)).to(device, dtype)
    bare.requires_grad_(False)
    bare_ids = ids.masked_fill(ids == image_id, 7)
    # the bare frozen LLM needs *some* trainable input to backpropagate like ours does
    embeds = bare.get_input_embeddings()(bare_ids).detach().requires_grad_(True)

    def step_bare() -> None:
        loss = bare(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        loss.backward()
        embeds.grad = None

    def step_of(model: VisionLanguageModel) -> Callable[[], None]:
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])

        def step() -> None:
            model(px, ids, mask, labels).loss.backward()
            opt.step()
            opt.zero_grad()

        return step

    def front() -> None:  # the frozen vision encoder's forward: work the bare LLM is spared
        with torch.no_grad():
            ours.encoder(px)

    return {"bare": step_bare, "ours": step_of(ours), "front": front, **with_compiled(ours, step_of, compiled)}


def with_compiled(model: torch.nn.Module, step_of: Callable, compiled: bool) -> dict[str, Callable[[], None]]:
    """A copy of ``model`` with its parts compiled as ``compile.enabled=true`` does, as a third side."""
    if not compiled:
        return {}
    twin = copy.deepcopy(model)
    compile_parts(twin)
    return {"compiled": step_of(twin)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--bf16", action="store_true", help="run both sides in bfloat16")
    parser.add_argument("--compile", action="store_true",
                        help="also time mmzoo's model with its parts compiled (compile.enabled=true)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default torch's; 1 is steadier on a CPU shared with other work)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    s = SIZES[args.size]
    print(f"device={args.device} size={args.size} dtype={dtype} threads={torch.get_num_threads()}")
    for name, pair in (("clip", clip_pair), ("llava", llava_pair)):
        ms = interleaved(pair(s, args.device, dtype, args.compile), args.steps, args.device)
        label = "transformers CLIPModel" if name == "clip" else "bare LlamaForCausalLM (same length)"
        print(f"{name:6s} mmzoo {ms['ours']:8.1f} ms/step | {label} {ms['bare']:8.1f} ms/step | "
              f"ratio {ms['ours'] / ms['bare']:.2f}x")
        if "compiled" in ms:
            print(f"{name:6s} mmzoo compiled {ms['compiled']:8.1f} ms/step | eager {ms['ours']:8.1f} ms/step | "
                  f"ratio {ms['compiled'] / ms['ours']:.2f}x")
        if "front" in ms:
            rest = ms["ours"] - ms["front"]
            print(f"{name:6s} its frozen vision encoder's forward alone {ms['front']:8.1f} ms | mmzoo without it "
                  f"{rest:8.1f} ms/step | ratio {rest / ms['bare']:.2f}x")


if __name__ == "__main__":
    main()
