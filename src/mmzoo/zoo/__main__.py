"""``python -m mmzoo.zoo``: list the zoo's own recipes, or make one, on the embedded data or on
the data a run's overrides name (``data=folder data.train=... data.test=...``)."""

from __future__ import annotations

import argparse
import logging

from mmzoo.run import train_and_evaluate
from mmzoo.zoo import PREFIX, recipe_dir, recipes, resolve
from mmzoo.zoo import __doc__ as ZOO_DOC

OVERRIDES_HELP = "a run's overrides naming the data (and tokenizer) the recipe is made on; default: the embedded data"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mmzoo.zoo", description=ZOO_DOC.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="recipes (on the embedded data, or the given data) and whether they are cached")
    listing.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    b = sub.add_parser("build", help="make a recipe's run (if not cached) and print its directory")
    b.add_argument("name")
    b.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    args = parser.parse_args(argv)
    parent = None
    if args.overrides:
        from mmzoo.compose import compose_config

        parent = compose_config(args.overrides)
    if args.command == "list":
        for name, overrides in recipes().items():
            folder = recipe_dir(name, parent)
            cached = (folder / "model.safetensors").is_file()
            print(f"{name:14s} {'cached' if cached else 'not cached':11s} {folder}  ({' '.join(overrides)})")
    else:
        print(resolve(PREFIX + args.name, parent, make=train_and_evaluate))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
