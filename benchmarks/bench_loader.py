"""The streaming loader against a raw decode of the same shards, side by side.

    python benchmarks/bench_loader.py [--samples 4000] [--workers 0 1 2]

"raw" opens each tar with ``tarfile``, decodes every JPEG with PIL and applies the same
image transform, in one process: the floor for reading these shards. "mmzoo" is the
training loader (shard list -> split -> tar -> shuffle buffer -> decode -> transform ->
collate with the CLIP collator, i.e. tokenisation included) at several worker counts.
Prints samples per second and the ratio to raw.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image

from mmzoo.data.datamodule import ShardDataModule
from mmzoo.data.shards import ensure_shapes
from mmzoo.data.tokenizer import shapes_tokenizer
from mmzoo.data.webdata import image_transform
from mmzoo.lit.clip import ClipCollator


def raw_decode(urls: list[str], transform) -> int:
    n = 0
    for url in urls:
        with tarfile.open(url) as tar:
            for member in tar:
                if member.name.endswith(".jpg"):
                    image = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")
                    transform(image)
                    n += 1
                elif member.name.endswith((".txt", ".json")):
                    data = tar.extractfile(member).read()
                    if member.name.endswith(".json"):
                        json.loads(data)
    return n


def loader_throughput(urls: list[str], transform, workers: int, batch_size: int) -> float:
    dm = ShardDataModule(train=urls, test=urls, batch_size=batch_size, num_workers=workers, shuffle_buffer=1000)
    dm.attach(transform, transform, ClipCollator(shapes_tokenizer(), 32))
    loader = dm.train_dataloader()
    start = time.perf_counter()
    n = sum(len(batch["captions"]) for batch in loader)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    root = Path(tempfile.gettempdir()) / "mmzoo-bench"
    urls = ensure_shapes(root=str(root), train_size=args.samples, test_size=100, samples_per_shard=500)["train"]
    transform = image_transform(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    start = time.perf_counter()
    n = raw_decode(urls, transform)
    raw = n / (time.perf_counter() - start)
    print(f"raw tarfile + PIL decode + transform: {raw:8.0f} samples/s ({n} samples, {len(urls)} shards)")
    for workers in args.workers:
        rate = loader_throughput(urls, transform, workers, args.batch_size)
        print(f"mmzoo loader, {workers} worker(s):      {rate:8.0f} samples/s  ratio to raw {rate / raw:.2f}x")


if __name__ == "__main__":
    main()
