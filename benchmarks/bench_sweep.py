"""A bridge sweep (3 projectors x 3 seeds) from pixels and from the frozen-feature cache.

    python benchmarks/bench_sweep.py [--steps 100] [--test-batches 1] [OVERRIDES...]

Runs ``python -m mmzoo.run --multirun model=llava bridge=linear,mlp2,mlp3 seed=0,1,2`` twice,
the second time with ``data.feature_cache=true`` and an empty cache folder (so the one-off
build is paid inside the sweep), then reads every job's ``metrics.json``. Prints the wall
time of each sweep, its summed training seconds and samples/s, and checks that every job
ended at the same loss both ways (same batches, same seeds). Evaluation is the same from
pixels in both sweeps; ``--test-batches`` limits it to keep the comparison about training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep(out: Path, overrides: list[str]) -> float:
    command = [sys.executable, "-m", "mmzoo.run", "--multirun", *overrides, f"hydra.sweep.dir={out}",
               "hydra.sweep.subdir=${hydra.job.num}"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def jobs(out: Path) -> dict[str, dict]:
    found = {}
    for path in sorted(out.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics["status"] != "ok":
            raise RuntimeError(f"{path}: {metrics['error']}")
        found[f"{metrics['parts'].get('bridge')} seed={metrics['seed']}"] = metrics
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--test-batches", default="1", help="trainer.limit_test_batches (1.0: the whole split)")
    parser.add_argument("overrides", nargs="*", default=[])
    args = parser.parse_args()
    common = ["model=llava", "bridge=linear,mlp2,mlp3", "seed=0,1,2", f"trainer.max_steps={args.steps}",
              f"trainer.limit_test_batches={args.test_batches}", "trainer.enable_progress_bar=false", *args.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wall_p = sweep(root / "pixels", common)
        wall_c = sweep(root / "cached", [*common, "data.feature_cache=true", f"data.feature_cache_dir={root / 'cache'}"])
        pixels, cached = jobs(root / "pixels"), jobs(root / "cached")
    assert pixels.keys() == cached.keys() and len(pixels) == 9, (sorted(pixels), sorted(cached))
    print(f"sweep: {' '.join(common)}")
    print(f"{'job':22s} {'pixels s':>9s} {'cached s':>9s} {'loss pixels':>12s} {'loss cached':>12s} {'rel diff':>9s}")
    diffs = []
    for name in pixels:
        p, c = pixels[name]["train"], cached[name]["train"]
        diffs.append(abs(p["loss_last"] - c["loss_last"]) / abs(p["loss_last"]))
        print(f"{name:22s} {p['seconds']:9.1f} {c['seconds']:9.1f} {p['loss_last']:12.6f} {c['loss_last']:12.6f} "
              f"{diffs[-1]:9.1e}")
    train_p = sum(m["train"]["seconds"] for m in pixels.values())
    train_c = sum(m["train"]["seconds"] for m in cached.values())
    rate_p = statistics.median(m["train"]["samples_per_second"] for m in pixels.values())
    rate_c = statistics.median(m["train"]["samples_per_second"] for m in cached.values())
    print(f"training, 9 jobs: pixels {train_p:.1f} s | cached {train_c:.1f} s (first job builds the cache) | "
          f"{train_p / train_c:.2f}x")
    print(f"median samples/s: pixels {rate_p:.0f} | cached {rate_c:.0f} | {rate_c / rate_p:.2f}x")
    print(f"whole sweep wall time (one process each, evaluation included): pixels {wall_p:.0f} s | cached {wall_c:.0f} s "
          f"| {wall_p / wall_c:.2f}x")
    print(f"final loss, max relative difference over the 9 jobs: {max(diffs):.1e}")


if __name__ == "__main__":
    main()
