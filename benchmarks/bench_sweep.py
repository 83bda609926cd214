"""A bridge sweep (3 projectors x 3 seeds) from pixels and from the frozen-feature cache.

    python benchmarks/bench_sweep.py [--steps 100] [--test-batches 1] [OVERRIDES...]

The sweep ``model=llava bridge=linear,mlp2,mlp3 seed=0,1,2``, each job run twice with
``python -m mmzoo.run``: from pixels, and with ``data.feature_cache=true`` on a cache folder
that starts empty (so the one-off build is paid inside the sweep, by its first job). The two
ways take turns job by job (alternating which goes first), so that a machine shared with
other work slows them alike. Prints per job the training seconds and final loss both ways
(the same batches and seeds: the losses must agree), the summed training seconds, median
samples/s and wall time of each way. Evaluation is the same, from pixels, both ways;
``--test-batches`` limits it to keep the comparison about training.
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


def job(out: Path, overrides: list[str]) -> tuple[dict, float]:
    """Run one job; its metrics.json and wall seconds."""
    command = [sys.executable, "-m", "mmzoo.run", *overrides, f"hydra.run.dir={out}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    if metrics["status"] != "ok":
        raise RuntimeError(f"{out}: {metrics['error']}")
    return metrics, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--test-batches", default="1", help="trainer.limit_test_batches (1.0: the whole split)")
    parser.add_argument("overrides", nargs="*", default=[])
    args = parser.parse_args()
    common = ["model=llava", f"trainer.max_steps={args.steps}", f"trainer.limit_test_batches={args.test_batches}",
              "trainer.enable_progress_bar=false", *args.overrides]  # fmt: skip
    pixels: dict[str, dict] = {}
    cached: dict[str, dict] = {}
    wall = {"pixels": 0.0, "cached": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ways = {"pixels": (pixels, []), "cached": (cached, ["data.feature_cache=true", f"data.feature_cache_dir={root / 'cache'}"])}
        for index, (bridge, seed) in enumerate((b, s) for b in ("linear", "mlp2", "mlp3") for s in (0, 1, 2)):
            name = f"{bridge} seed={seed}"
            order = ["pixels", "cached"] if index % 2 == 0 else ["cached", "pixels"]
            for way in order:
                found, extra = ways[way]
                found[name], seconds = job(root / way / str(index), [*common, f"bridge={bridge}", f"seed={seed}", *extra])
                wall[way] += seconds
            print(f"{name}: done", file=sys.stderr)
    assert pixels.keys() == cached.keys() and len(pixels) == 9, (sorted(pixels), sorted(cached))
    print(f"sweep: bridge=linear,mlp2,mlp3 seed=0,1,2 {' '.join(common)}")
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
    print(f"whole sweep wall time (a process per job, evaluation included): pixels {wall['pixels']:.0f} s | "
          f"cached {wall['cached']:.0f} s | {wall['pixels'] / wall['cached']:.2f}x")
    print(f"final loss, max relative difference over the 9 jobs: {max(diffs):.1e}")


if __name__ == "__main__":
    main()
