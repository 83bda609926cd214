"""The streaming loader against a raw decode of the same shards, side by side.

    python benchmarks/bench_loader.py [--samples 4000] [--workers 0 1 2] [--epochs 2] [--repeats 3] [--threads 1]

"raw" opens each tar with ``tarfile``, decodes every JPEG with PIL, applies the same image
transform and parses the json, in one process: the floor for reading these shards. "raw +
collate" also batches the samples through the loader's collator (tokenising the captions):
what the bare loop leaves out of the loader's work. "mmzoo" is the
training loader (shard list -> split -> tar -> shuffle buffer -> decode -> transform ->
collate with the caption collator, i.e. tokenisation included) at several worker counts.
The readers take turns, ``--repeats`` rounds. Prints median samples per second, the ratio to
raw (median [range] of the rounds' ratios) and per reading process (the ratio divided by the
workers: 0 workers is one process, the main one). The main process runs torch on
``--threads`` threads (default 1, what the DataLoader gives each worker), so that raw decode,
the in-process loader and a worker do the same work on the same resources.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from mmzoo.data.captions import CaptionCollator
from mmzoo.data.datamodule import ShardDataModule
from mmzoo.data.shards import ensure_shapes
from mmzoo.data.tokenizer import shapes_tokenizer
from mmzoo.data.webdata import image_transform


def raw_decode(urls: list[str], transform, collate=None, batch_size: int = 128) -> int:
    """Decode every sample of ``urls`` in order; with ``collate``, also batch them through it."""
    n = 0
    pending: dict[str, dict] = {}
    batch: list[dict] = []
    for url in urls:
        with tarfile.open(url) as tar:
            for member in tar:
                key, ext = member.name.rsplit(".", 1)
                sample = pending.setdefault(key, {})
                data = tar.extractfile(member).read()
                if ext == "jpg":
                    sample["image"] = transform(Image.open(io.BytesIO(data)).convert("RGB"))
                    n += 1
                elif ext == "json":
                    sample["meta"] = json.loads(data)
                elif ext == "txt":
                    sample["caption"] = data.decode()
                if len(sample) == 3:
                    batch.append(pending.pop(key))
                    if len(batch) == batch_size:
                        if collate is not None:
                            collate(batch)
                        batch = []
    return n


def loader_passes(urls: list[str], transform, collate, workers: int, batch_size: int, epochs: int) -> list[tuple[float, float]]:
    """(seconds to the first batch, samples/s of the whole pass) of each of ``epochs`` passes
    over one training loader, as Lightning iterates it epoch after epoch."""
    dm = ShardDataModule(train=urls, test=urls, batch_size=batch_size, num_workers=workers, shuffle_buffer=1000)
    dm.attach(transform, transform, collate)
    loader = dm.train_dataloader()
    passes = []
    for _ in range(epochs):
        start = time.perf_counter()
        batches = iter(loader)
        n = len(next(batches)["captions"])
        first = time.perf_counter() - start
        n += sum(len(batch["captions"]) for batch in batches)
        passes.append((first, n / (time.perf_counter() - start)))
    return passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="passes over each loader (workers persist between them)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of raw + each worker count, in turns")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process (a worker has 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.gettempdir()) / "mmzoo-bench"
    urls = ensure_shapes(root=str(root), train_size=args.samples, test_size=100, samples_per_shard=500)["train"]
    transform = image_transform(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    collate = CaptionCollator(shapes_tokenizer(), 32)
    raws: list[float] = []
    raws_collated: list[float] = []
    passes: dict[int, list[list[tuple[float, float]]]] = {w: [] for w in args.workers}
    for _ in range(args.repeats):  # the readers take turns: a busy machine slows them alike
        start = time.perf_counter()
        n = raw_decode(urls, transform)
        raws.append(n / (time.perf_counter() - start))
        start = time.perf_counter()
        raw_decode(urls, transform, collate, args.batch_size)
        raws_collated.append(n / (time.perf_counter() - start))
        for workers in args.workers:
            passes[workers].append(loader_passes(urls, transform, collate, workers, args.batch_size, args.epochs))
    raw = statistics.median(raws)
    print(f"raw tarfile + PIL decode + transform: {raw:8.0f} samples/s ({n} samples, {len(urls)} shards; "
          f"median of {args.repeats} [{min(raws):.0f}-{max(raws):.0f}])")
    collated = statistics.median(raws_collated)
    print(f"raw + the loader's tokenising collate:  {collated:8.0f} samples/s ({collated / raw:.2f}x raw: the work "
          "the bare loop leaves out)")
    for workers in args.workers:
        for epoch in range(args.epochs):
            first = statistics.median(p[epoch][0] for p in passes[workers])
            rate = statistics.median(p[epoch][1] for p in passes[workers])
            ratio = [p[epoch][1] / r for p, r in zip(passes[workers], raws, strict=True)]
            print(f"mmzoo loader, {workers} worker(s), epoch {epoch + 1}: first batch after {first:5.2f} s, "
                  f"{rate:6.0f} samples/s, ratio to raw {rate / raw:.2f}x [{min(ratio):.2f}-{max(ratio):.2f}], "
                  f"per reading process {rate / max(1, workers) / raw:.2f}x")


if __name__ == "__main__":
    main()
