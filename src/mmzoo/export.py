"""``python -m mmzoo.export <run dir> <out dir>``: a trained zoo model for other libraries.

A CLIP of transformers CLIP towers is written as a ``CLIPModel`` directory, a LLaVA-shaped
model as ``LlavaForConditionalGeneration``, a BLIP as ``BlipForConditionalGeneration`` (or,
with ``--layout``, ``BlipForImageTextRetrieval``), a BLIP-2 / InstructBLIP of their own vision
towers as ``Blip2ForConditionalGeneration`` / ``InstructBlipForConditionalGeneration`` (each
loads with that class's ``from_pretrained`` and gives the same outputs); any other model as
safetensors of its parts with the config that builds it. ``mmzoo.json`` in ``<out dir>``
says what is what.
"""

from __future__ import annotations

import argparse
import json
import logging


def main(argv: list[str] | None = None) -> None:
    from mmzoo.convert.export import LAYOUTS

    parser = argparse.ArgumentParser(prog="python -m mmzoo.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished run directory (config.yaml + model.safetensors)")
    parser.add_argument("out_dir", help="where to write the export")
    parser.add_argument(
        "--layout",
        default="auto",
        choices=["auto", "parts", *LAYOUTS],
        help="auto: the transformers class that fits, else parts",
    )
    args = parser.parse_args(argv)

    from mmzoo.convert.export import export_run

    info = export_run(args.run_dir, args.out_dir, layout=args.layout)
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
