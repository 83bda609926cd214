"""The frozen-feature cache against training from pixels, side by side on the same batches.

    python benchmarks/bench_feature_cache.py [--batches 12] [--repeats 3] [OVERRIDES...]

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


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def spread(values: list[float], scale: float = 1000.0) -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):7.1f} [{min(v):.1f}-{max(v):.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", default=RANDOM_ZOO_SHAPES)
    args = parser.parse_args()
    torch.manual_seed(0)
    overrides = [o for o in args.overrides if not o.startswith("model=")]
    model = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("model=")), "llava")
    module = build(model, overrides)
    module.train()
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
        cached = list(islice(cached_loader, args.batches))
        pixels = list(islice(pixel_loader, args.batches))
        size = sum(p.stat().st_size for p in manifest.parent.glob("*.tar"))
        print(f"cache build: {build_s:.1f} s for one shard ({size / 1e6:.1f} MB)")

        # 1. the same loss
        rel = []
        with torch.no_grad():
            for c, p in zip(cached, pixels, strict=True):
                assert [m["key"] for m in c["meta"]] == [m["key"] for m in p["meta"]]
                a, b = float(module.loss(c)[0]), float(module.loss(p)[0])
                rel.append(abs(a - b) / abs(b))
        print(f"loss: max relative difference over {len(rel)} batches: {max(rel):.2e}")

        # 2. the step, and the frozen front's share of it
        optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)

        def step(batch: dict) -> None:
            optimizer.zero_grad()
            module.loss(batch)[0].backward()
            optimizer.step()

        def front(batch: dict) -> None:
            with torch.no_grad():
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


if __name__ == "__main__":
    main()
