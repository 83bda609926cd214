"""Trained parts the zoo makes for itself, cached like the shards.

LLaVA takes CLIP's ViT and a pretrained Vicuna; MiniGPT-4 takes BLIP-2's Q-Former. On
the embedded data the zoo reproduces that lineage: ``zoo:<name>`` in a ``from_run`` field
names a recipe (``mmzoo/recipes/<name>.yaml``: the overrides of an ordinary
``python -m mmzoo.run``), run once on first use into ``$MMZOO_CACHE/zoo/<name>-<hash>``.

    python -m mmzoo.zoo build clip    # make (or find) the cached CLIP run and print its path
    python -m mmzoo.zoo list
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

log = logging.getLogger(__name__)
PREFIX = "zoo:"


def recipes_dir() -> Path:
    return Path(__file__).resolve().parent / "recipes"


def cache_root() -> Path:
    return Path(os.environ.get("MMZOO_CACHE", Path.home() / ".cache" / "mmzoo")) / "zoo"


def recipes() -> dict[str, list[str]]:
    """Recipe name -> overrides, from ``mmzoo/recipes/*.yaml`` (kept out of ``conf/`` so they
    do not show up as a config group)."""
    out = {}
    for path in sorted(recipes_dir().glob("*.yaml")):
        out[path.stem] = [str(o) for o in yaml.safe_load(path.read_text())["overrides"]]
    return out


def recipe_dir(name: str, overrides: list[str]) -> Path:
    """Cache folder of a recipe: keyed by its overrides, the package version and the tiny
    tokenizer's vocabulary (a saved model's embeddings are only valid for the same ids)."""
    from mmzoo import __version__
    from mmzoo.data.tokenizer import shapes_tokenizer

    vocab = sorted(shapes_tokenizer().get_vocab().items(), key=lambda kv: kv[1])
    key = "\n".join([*overrides, __version__, repr(vocab)])
    return cache_root() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def resolve(ref: str) -> str:
    """A run directory for ``ref``: itself, or for ``zoo:<name>`` the cached recipe run (made if missing)."""
    if not ref.startswith(PREFIX):
        return ref
    name = ref[len(PREFIX) :]
    known = recipes()
    if name not in known:
        raise ValueError(f"unknown zoo recipe {name!r}; valid: {sorted(known)}")
    return str(build(name, known[name]))


def build(name: str, overrides: list[str]) -> Path:
    """Run the recipe once (atomically: an interrupted build never looks finished)."""
    target = recipe_dir(name, overrides)
    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "mmzoo.run", *overrides, f"hydra.run.dir={tmp}"]
    log.warning("zoo: %s is not cached yet; making it once with: %s", name, " ".join(cmd[1:]))
    subprocess.run(cmd, check=True)
    if target.exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mmzoo.zoo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="recipes and whether they are cached")
    b = sub.add_parser("build", help="make a recipe's run (if not cached) and print its directory")
    b.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, overrides in recipes().items():
            cached = (recipe_dir(name, overrides) / "model.safetensors").is_file()
            print(f"{name:10s} {'cached' if cached else 'not cached':11s} {recipe_dir(name, overrides)}")
    else:
        print(resolve(PREFIX + args.name))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
