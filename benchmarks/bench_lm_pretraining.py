"""The zoo LM's pretraining with and without decoding the images it never reads, side by side.

    python benchmarks/bench_lm_pretraining.py [--steps 150] [--repeats 2] [OVERRIDES...]

``model=lm`` trains on text alone, yet until its loader learnt to skip them every sample's
image was decoded and resized in the loader's worker, which on two cores competes with the
training step. Each round trains ``model=lm`` for ``--steps`` steps twice, in turns (alternating
which goes first): "pixels" with the old behaviour (the module hands the loader an image
transform) and "text only" (the module hands it none, as it now does). Same batches, same
seed: the final losses must agree. Prints the training seconds and samples/s of each way and
their ratio. The evaluation is limited to one test batch, as it is not what is compared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from mmzoo.api import compose_config
from mmzoo.data.webdata import image_transform
from mmzoo.lit.language import LanguageModelModule
from mmzoo.run import train_and_evaluate


def train(steps: int, decode_images: bool, out: Path, overrides: list[str]) -> dict:
    original = LanguageModelModule.image_transform
    if decode_images:  # what the module used to hand the loader
        LanguageModelModule.image_transform = lambda self: image_transform(32, (0.5,) * 3, (0.5,) * 3)
    try:
        cfg = compose_config(
            ["model=lm", f"trainer.max_steps={steps}", "trainer.max_epochs=-1", "trainer.enable_progress_bar=false",
             "trainer.limit_test_batches=1", *overrides]
        )  # fmt: skip
        return train_and_evaluate(cfg, out)["train"]
    finally:
        LanguageModelModule.image_transform = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    ways = {"pixels": True, "text only": False}
    seconds: dict[str, list[float]] = {w: [] for w in ways}
    rates: dict[str, list[float]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            losses = {}
            for way in order:
                result = train(args.steps, ways[way], Path(tmp) / f"{r}-{way.replace(' ', '_')}", args.overrides)
                seconds[way].append(result["seconds"])
                rates[way].append(result["samples_per_second"])
                losses[way] = result["loss_last"]
                print(f"round {r} {way:9s} {result['seconds']:6.1f} s  {result['samples_per_second']:6.0f} samples/s  "
                      f"final loss {result['loss_last']:.6f}", flush=True)  # fmt: skip
            if losses["pixels"] != losses["text only"]:
                raise SystemExit(f"final losses differ: {losses}")
    for way in ways:
        print(f"{way:9s} median {statistics.median(seconds[way]):6.1f} s, {statistics.median(rates[way]):6.0f} samples/s")
    ratios = [p / t for p, t in zip(seconds["pixels"], seconds["text only"], strict=True)]
    print(f"text only is {statistics.median(ratios):.2f}x faster (rounds: {', '.join(f'{x:.2f}' for x in ratios)}); "
          "final losses identical")  # fmt: skip


if __name__ == "__main__":
    main()
