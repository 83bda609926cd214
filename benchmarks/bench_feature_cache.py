"""The frozen-feature cache against training from pixels, side by side on the same batches.

    python benchmarks/bench_feature_cache.py [--batches 12] [--repeats 3] [--device cuda] [--bf16] [OVERRIDES...]

Builds the model (default ``model=llava`` with random parts of the zoo's CLIP ViT and LM
shapes, so no zoo run is needed and a step costs what it costs with the trained ones; give
``model=llava`` alone for the zoo's own), takes the first training shard of the data (1,000
shapes scenes) unshuffled, and builds its feature cache (timed: the one-off cost).
Then, on the same batches:

1. loss: the module's loss from pixels and from cached features (max relative difference);
2. step: zero_grad + loss + backward + AdamW step from pixels and from features, interleaved;
   the frozen front's forward alone gives its share ``s`` of a pixel step, and Amdahl's law
   predicts a speed-up of ``1 / (1 - s)`` from removing it;
3. loader: a whole epoch of the shard through the streaming pipeline (decode + transform +
   collate against reading features + collate), 0 workers.
Prints medians and ranges over ``--repeats``; ratios > 1 favour the cache.

On a GPU (``--device cuda --bf16``), LLaVA-1.5-7B's shapes with random weights (no download):
``--device cuda --bf16 --7b``, i.e. a CLIP ViT-L/14 at 336 px (577 tokens) and a 4,096-wide
32-layer LLaMA over the embedded data's vocabulary (its LM head is smaller than Vicuna's 32k:
~1% of the step's FLOPs), batch 16.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch

from mmzoo.api import build, compose_config
from mmzoo.data.datamodule import ShardDataModule
from mmzoo.data.shards import ensure_shapes

# the zoo's CLIP ViT and LM shapes with random weights: no zoo run needed, the same cost per step
RANDOM_ZOO_SHAPES = ["model=llava", "encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null"]


# LLaVA-1.5-7B: CLIP ViT-L/14-336 penultimate patch tokens -> mlp2 -> a Vicuna-7B-shaped LLaMA
LLAVA_7B_SHAPES = [
    "bridge=mlp2", "data.image_size=336", "data.batch_size=16", "data.train_size=1000", "data.test_size=100",
    "encoder.config.hidden_size=1024", "encoder.config.intermediate_size=4096", "encoder.config.num_hidden_layers=24",
    "encoder.config.num_attention_heads=16", "encoder.config.image_size=336", "encoder.config.patch_size=14",
    "llm.config.hidden_size=4096", "llm.config.intermediate_size=11008", "llm.config.num_hidden_layers=32",
    "llm.config.num_attention_heads=32", "llm.config.num_key_value_heads=32", "llm.config.max_position_embeddings=1024",
]  # fmt: skip


def timed(fn, *args) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def spread(values: list[float], scale: float = 1000.0) -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):7.1f} [{min(v):.1f}-{max(v):.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="autocast the steps to bfloat16 (as trainer=gpu does)")
    parser.add_argument("--7b", dest="llava_7b", action="store_true", help="LLaVA-1.5-7B's shapes, random weights")
    parser.add_argument("overrides", nargs="*", default=RANDOM_ZOO_SHAPES)
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    overrides = [o for o in args.overrides if not o.startswith("model=")] + (LLAVA_7B_SHAPES if args.llava_7b else [])
    model = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("model=")), "llava")
    module = build(model, overrides).to(device)
    module.train()
    precision = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    data = compose_config([f"model={model}", *overrides]).data
    shard = ensure_shapes(train_size=data.train_size, test_size=data.test_size, image_size=data.image_size,
                          samples_per_shard=data.samples_per_shard)["train"][0]  # fmt: skip
    source = module.feature_source()
    print(f"model={model} {' '.join(overrides)} | cached level: {source.level} {source.shape} | "
          f"threads={torch.get_num_threads()} | batch {data.batch_size} | {shard}")

    with tempfile.TemporaryDirectory() as cache_dir:
        dm = ShardDataModule(train=[shard], batch_size=data.batch_size, eval_batch_size=data.eval_batch_size,
                             num_workers=0, shuffle_buffer=0, feature_cache=True, feature_cache_dir=cache_dir)  # fmt: skip
        dm.attach(module.image_transform(), module.image_transform(), module.collator(), module.collator(False))
        dm.feature_module = module
        build_s = timed(dm.train_dataloader)
        manifest = next(Path(cache_dir).glob("*/manifest.json"))
        cached_loader = dm.train_dataloader()
        dm.feature_cache = False
        pixel_loader = dm.train_dataloader()
        cached = [module.transfer_batch_to_device(b, device, 0) for b in islice(cached_loader, args.batches)]
        pixels = [module.transfer_batch_to_device(b, device, 0) for b in islice(pixel_loader, args.batches)]
        size = sum(p.stat().st_size for p in manifest.parent.glob("*.tar"))
        print(f"cache build: {build_s:.1f} s for one shard ({size / 1e6:.1f} MB)")

        # 1. the same loss
        rel = []
        with torch.no_grad(), precision:
            for c, p in zip(cached, pixels, strict=True):
                assert [m["key"] for m in c["meta"]] == [m["key"] for m in p["meta"]]
                a, b = float(module.loss(c)[0]), float(module.loss(p)[0])
                rel.append(abs(a - b) / abs(b))
        print(f"loss: max relative difference over {len(rel)} batches: {max(rel):.2e}")

        # 2. the step, and the frozen front's share of it
        optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)

        def step(batch: dict) -> None:
            optimizer.zero_grad()
            with precision:
                loss = module.loss(batch)[0]
            loss.backward()
            optimizer.step()

        def front(batch: dict) -> None:
            with torch.no_grad(), precision:
                source.compute(batch["pixel_values"])

        for batch in pixels[:2] + cached[:2]:  # warm-up
            step(batch)
        steps_p, steps_c, fronts = [], [], []
        for _ in range(args.repeats):  # the three take turns batch by batch: a busy machine slows them alike
            times = [(timed(step, p), timed(step, c), timed(front, p)) for p, c in zip(pixels, cached, strict=True)]
            steps_p.append(statistics.mean(t[0] for t in times))
            steps_c.append(statistics.mean(t[1] for t in times))
            fronts.append(statistics.mean(t[2] for t in times))
        share = statistics.median(fronts) / statistics.median(steps_p)
        predicted = 1 / (1 - share)
        ratios = [p / c for p, c in zip(steps_p, steps_c, strict=True)]
        print(f"step from pixels   {spread(steps_p)} ms | frozen front alone {spread(fronts)} ms (share {share:.1%})")
        print(f"step from features {spread(steps_c)} ms | speed-up {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f}-{max(ratios):.2f}] | Amdahl predicts {predicted:.2f}x")

        # 3. the loader: a whole epoch of the shard
        epochs_p, epochs_c = [], []
        for _ in range(args.repeats):
            dm.feature_cache = False
            epochs_p.append(timed(lambda: sum(1 for _ in dm.train_dataloader())))
            dm.feature_cache = True
            epochs_c.append(timed(lambda: sum(1 for _ in dm.train_dataloader())))
        n = sum(s["count"] for s in json.loads(manifest.read_text())["shards"])
        rate_p = [n / t for t in epochs_p]
        rate_c = [n / t for t in epochs_c]
        loader_ratios = [c / p for p, c in zip(rate_p, rate_c, strict=True)]
        print(f"loader: pixels {spread(rate_p, 1)} samples/s | features {spread(rate_c, 1)} samples/s | "
              f"{statistics.median(loader_ratios):.2f}x [{min(loader_ratios):.2f}-{max(loader_ratios):.2f}]")
        whole_p = statistics.median(steps_p) + data.batch_size / statistics.median(rate_p)
        whole_c = statistics.median(steps_c) + data.batch_size / statistics.median(rate_c)
        print(f"step + its loading (one process): pixels {whole_p * 1000:.1f} ms | features {whole_c * 1000:.1f} ms | "
              f"{whole_p / whole_c:.2f}x")
        print(f"samples/s per device, step + loading: pixels {data.batch_size / whole_p:.1f} | "
              f"features {data.batch_size / whole_c:.1f}")


if __name__ == "__main__":
    main()
