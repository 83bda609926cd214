"""``python -m mmzoo.chat RUN_DIR --image PATH``: multi-turn chat about an image.

Each answer is generated from the whole conversation so far (the model's own template,
the image placeholder in the first turn). Commands: ``/image PATH`` switches image and
starts over, ``/reset`` starts over, ``/quit`` (or end of input) leaves. Without
``--image`` a scene of the embedded shapes test split is used, and its caption shown.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from PIL import Image

from mmzoo.data.templates import ASSISTANT, HUMAN, IMAGE_PLACEHOLDER


def load_image(path: str) -> Image.Image:
    """An RGB image from ``path``; a clear ``OSError``/``ValueError`` when it is not one."""
    if not path:
        raise ValueError("give a path: /image PATH")
    with Image.open(path) as image:
        return image.convert("RGB")


def chat(module, image: Image.Image, lines: TextIO, out: TextIO, **generate_kwargs) -> list[dict[str, str]]:
    """Run the loop over ``lines``; returns the final conversation."""
    turns: list[dict[str, str]] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            turns = []
            print("(conversation reset)", file=out)
            continue
        if line.startswith("/image"):
            path = line[len("/image"):].strip()
            try:
                image = load_image(path)
            except (OSError, ValueError) as err:  # a typo must not cost the conversation
                print(f"(could not open {path!r}: {err}; still talking about the previous image)", file=out)
                continue
            turns = []
            print("(new image; conversation reset)", file=out)
            continue
        if line.startswith("/"):
            print(f"(unknown command {line.split()[0]!r}: /image PATH, /reset, /quit)", file=out)
            continue
        value = f"{IMAGE_PLACEHOLDER}\n{line}" if not turns else line
        turns.append({"from": HUMAN, "value": value})
        answer = module.generate([image], [turns], **generate_kwargs)[0]
        turns.append({"from": ASSISTANT, "value": answer})
        print(f"assistant: {answer}", file=out, flush=True)
    return turns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mmzoo.chat", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory of a generative model (llava, minigpt4, ...)")
    parser.add_argument("--image", help="image file (default: a scene from the shapes test split)")
    parser.add_argument("--shapes-index", type=int, default=0, help="which shapes test scene when no --image")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args(argv)

    from mmzoo.api import from_pretrained

    module = from_pretrained(args.run)
    if not hasattr(module, "generate"):
        raise SystemExit(f"{args.run} holds a {type(module).__name__}, which does not generate text")
    if args.image:
        try:
            image = load_image(args.image)
        except (OSError, ValueError) as err:
            raise SystemExit(f"could not open --image {args.image}: {err}") from None
    else:
        from mmzoo.data.shapes import make_sample

        image, caption, _ = make_sample(args.shapes_index, "test", 0, 64)
        print(f"(shapes test scene {args.shapes_index}: {caption})")
    kwargs = {"max_new_tokens": args.max_new_tokens}
    if args.sample:
        kwargs |= {"do_sample": True, "temperature": args.temperature}
    if sys.stdin.isatty():
        print("Ask about the image. /image PATH, /reset, /quit.")
    chat(module, image, sys.stdin, sys.stdout, **kwargs)


if __name__ == "__main__":
    main()
