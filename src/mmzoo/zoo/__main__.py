"""``python -m mmzoo.zoo``: list the zoo's own recipes, or make one (on the embedded data)."""

from __future__ import annotations

import argparse
import logging

from mmzoo.run import train_and_evaluate
from mmzoo.zoo import PREFIX, recipe_dir, recipes, resolve
from mmzoo.zoo import __doc__ as ZOO_DOC


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mmzoo.zoo", description=ZOO_DOC.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="recipes (on the embedded data) and whether they are cached")
    b = sub.add_parser("build", help="make a recipe's run on the embedded data (if not cached) and print its directory")
    b.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, overrides in recipes().items():
            folder = recipe_dir(name)
            cached = (folder / "model.safetensors").is_file()
            print(f"{name:14s} {'cached' if cached else 'not cached':11s} {folder}  ({' '.join(overrides)})")
    else:
        print(resolve(PREFIX + args.name, make=train_and_evaluate))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
