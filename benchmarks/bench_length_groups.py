"""Length-grouped batches against naive batching: padding, and training samples/s, side by side.

    python benchmarks/bench_length_groups.py [--batches 64] [--repeats 3] [--threads 1]
                                             [--mixes stage2,conversation] [OVERRIDES...]

LLaVA on the embedded ``shapes`` data with random parts of the zoo's CLIP ViT and LM shapes
(no zoo run needed; a step costs what it costs with the trained ones), with the task mixes
that carry conversations: ``stage2`` is ``experiment=llava_stage2``'s mix (conversation, vqa,
describe), ``conversation`` conversations alone. The projector and the LLM train, the encoder
is frozen (``model.freeze=[encoder]``, stage 2's recipe), at the budget's batch of 64.

Per mix, the run's own training pipeline (``mmzoo.run.build``: shards, shuffle buffer,
collator) gives the first ``--batches`` batches twice: with ``data.group_by_length=true``
(windows of ``data.group_window`` batches of the shuffled stream sorted by token length) and
without. ``--batches`` a multiple of the window makes both the same samples, only batched
differently (checked). Then:

1. padding: real tokens / padded tokens of the text the batches hold (their attention masks;
   goal >= 0.9), and of the LLM's rows, which also hold the image's visual tokens;
2. step: ``zoo_steps.BareStep`` (the module's loss, backward, clipping, AdamW and scheduler)
   on one module, grouped and naive batches taking turns batch by batch, so a busy machine
   slows both alike; samples/s (and real text tokens/s) of each over the same samples, the
   ratio per repeat, median [range] over repeats. Ratios > 1 favour length groups.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from zoo_steps import BareStep, quiet, run_config

from mmzoo.data.length_groups import padding_efficiency
from mmzoo.run import build

# the zoo's CLIP ViT and LM shapes with random weights; stage 2's recipe (the LLM trains)
RANDOM_ZOO_SHAPES = ["model=llava", "encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null",
                     "model.freeze=[encoder]"]  # fmt: skip
MIXES = {
    "stage2": "model.tasks=[conversation,vqa,describe]",  # conf/experiment/llava_stage2.yaml
    "conversation": "model.tasks=[conversation]",
    "llava": "model.tasks=[caption,vqa,conversation]",  # model=llava's own single-stage mix
}


def keys(batches: list[dict[str, Any]]) -> list[str]:
    return [m["key"] for b in batches for m in b["meta"]]


def llm_efficiency(batches: list[dict[str, Any]], visual: int) -> float:
    """Real / padded positions of the LLM's rows: ``visual`` image tokens + the text in each."""
    real = sum(int(b["attention_mask"].sum()) + visual * len(b["meta"]) for b in batches)
    padded = sum(b["attention_mask"].numel() + visual * len(b["meta"]) for b in batches)
    return real / padded


def timed(step: BareStep, batch: dict[str, Any]) -> float:
    start = time.perf_counter()
    step.step(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=64, help="per way (a multiple of data.group_window)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    parser.add_argument("--mixes", type=lambda s: s.split(","), default=["stage2", "conversation"],
                        help=f"task mixes among {','.join(MIXES)}")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="more config overrides (after the defaults)")
    args = parser.parse_args()
    quiet(args.threads)
    print(f"threads={args.threads} batches={args.batches} repeats={args.repeats} "
          f"overrides={[*RANDOM_ZOO_SHAPES, *args.overrides]}", flush=True)  # fmt: skip
    for mix in args.mixes:
        with tempfile.TemporaryDirectory() as tmp:
            loaded: dict[str, list[dict[str, Any]]] = {}
            for way, group in (("grouped", "true"), ("naive", "false")):
                cfg = run_config([*RANDOM_ZOO_SHAPES, MIXES[mix], f"data.group_by_length={group}", *args.overrides],
                                 args.batches * args.repeats)  # fmt: skip
                torch.manual_seed(0)
                module, datamodule, _ = build(cfg, Path(tmp) / way)
                datamodule.num_workers = 0
                start = time.perf_counter()
                loaded[way] = list(islice(iter(datamodule.train_dataloader()), args.batches))
                load_s = time.perf_counter() - start
                if way == "grouped":
                    window, batch_size = cfg.data.group_window, cfg.data.batch_size
                    grouped_module, visual = module, module.model.encoder.num_tokens
                print(f"[{mix}] {way}: {len(loaded[way])} batches loaded in {load_s:.1f} s", flush=True)
            grouped, naive = loaded["grouped"], loaded["naive"]
            same = sorted(keys(grouped)) == sorted(keys(naive))
            n_samples = len(keys(grouped))
            print(f"[{mix}] batch {batch_size}, window {window} batches, {visual} visual tokens per row | "
                  f"the same {n_samples} samples both ways: {same}")  # fmt: skip

            # 1. padding
            eff = {w: padding_efficiency(b) for w, b in loaded.items()}
            eff_llm = {w: llm_efficiency(b, visual) for w, b in loaded.items()}
            width = {w: statistics.mean(b["attention_mask"].shape[1] for b in bs) for w, bs in loaded.items()}
            print(f"[{mix}] text real/padded: grouped {eff['grouped']:.3f} | naive {eff['naive']:.3f} | "
                  f"{eff['grouped'] / eff['naive']:.2f}x (goal >= 0.9: {'met' if eff['grouped'] >= 0.9 else 'NOT met'})")
            print(f"[{mix}] LLM rows (visual + text) real/padded: grouped {eff_llm['grouped']:.3f} | "
                  f"naive {eff_llm['naive']:.3f} | mean padded text length grouped {width['grouped']:.1f}, "
                  f"naive {width['naive']:.1f}")  # fmt: skip

            # 2. steps, interleaved batch by batch on one module
            real_tokens = {w: sum(int(b["attention_mask"].sum()) for b in bs) for w, bs in loaded.items()}
            step = BareStep(grouped_module, args.batches * (args.repeats + 1) * 2, cfg.trainer.get("gradient_clip_val"))
            for batch in grouped[:2] + naive[:2]:  # warm-up
                step.step(batch)
            ratios = []
            for repeat in range(args.repeats):
                t_g = t_n = 0.0
                for i, (g, n) in enumerate(zip(grouped, naive, strict=True)):
                    if i % 2:  # alternate which goes first
                        t_n += timed(step, n)
                        t_g += timed(step, g)
                    else:
                        t_g += timed(step, g)
                        t_n += timed(step, n)
                ratio = t_n / t_g
                ratios.append(ratio)
                print(f"[{mix}] repeat {repeat}: grouped {n_samples / t_g:7.1f} samples/s "
                      f"({real_tokens['grouped'] / t_g:8.0f} text tokens/s, {1000 * t_g / len(grouped):6.1f} ms/step) | "
                      f"naive {n_samples / t_n:7.1f} samples/s ({real_tokens['naive'] / t_n:8.0f} text tokens/s, "
                      f"{1000 * t_n / len(naive):6.1f} ms/step) | {ratio:.3f}x", flush=True)  # fmt: skip
            print(f"[{mix}] samples/s grouped / naive over {args.repeats} repeats, median [range]: "
                  f"{statistics.median(ratios):.3f}x [{min(ratios):.3f}-{max(ratios):.3f}] | padded text tokens "
                  f"naive / grouped {eff['grouped'] / eff['naive']:.2f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
