"""The embedded ``shapes`` dataset: generated scenes of one or two coloured shapes.

Why: every model in the zoo must train and be compared offline, on a CPU, in minutes.
Scenes are small (6 colours x 3 shapes x 5 positions, one or two objects) yet need
grounding to caption, retrieve and answer questions about, and each sample carries all
the text kinds the zoo trains on: a canonical caption, single-word QA, a detailed
description and a LLaVA-style conversation. A sample is a pure function of
(seed, split, index), so shards can be regenerated bit-for-bit anywhere.

This module only generates; ``mmzoo.data.shards.ensure_shapes`` writes (and caches) the
shards, so the generator depends on nothing in the package and the writer on it.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("left", "right", "top", "bottom", "center")
SPLITS = ("train", "test")
QA_TYPES = ("colour", "shape", "position", "count", "exists")
GENERATOR_VERSION = 2  # bump when rendering or text changes, so cached shards are rebuilt

_RGB = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 205, 25),
    "purple": (135, 55, 180),
    "orange": (245, 130, 20),
}
_CENTRE = {
    "left": (0.2, 0.5),
    "right": (0.8, 0.5),
    "top": (0.5, 0.2),
    "bottom": (0.5, 0.8),
    "center": (0.5, 0.5),
}
_GRID = {"left": (-1, 0), "right": (1, 0), "top": (0, -1), "bottom": (0, 1), "center": (0, 0)}
_WHERE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
_NUMBER = {1: "one", 2: "two"}
_PROPERTY = {
    "circle": "the {c} circle is round.",
    "square": "the {c} square has four equal sides.",
    "triangle": "the {c} triangle has three corners.",
}
# text templates; vocabulary() reads its words from these, so keep every word of the data here
_OPENINGS = (
    "the image shows {n} {noun} on a plain background.",
    "this picture contains {n} {noun}.",
    "there {be} {n} {noun} in this image.",
    "we can see {n} {noun} in the picture.",
)
_OBJECT_SENTENCES = ("{ac} {s} is {w}.", "{w}, there is {ac} {s}.", "the {s} {w} is {c}.")
_CLOSINGS = (
    "the background is light and empty.",
    "nothing else is in the picture.",
    "the rest of the image is empty.",
)
_RELATIONS = ("to the left of", "to the right of", "above", "below")
_DESCRIBE = (
    "describe the image in detail.",
    "what do you see in this picture?",
    "give a detailed description of the image.",
)
_CAPTION_PROMPTS = ("write a short caption for the image.", "what is in the image? answer briefly.")
_QA_TEXT = (
    "what colour is the {s} {w}?",
    "what shape is {w}?",
    "how many shapes are there?",
    "where is the {c} {s}?",
    "is there an {c} {s}?",
    "is there a {s} {w}?",
    "yes, no, there is no {c} {s} {w}.",
    "there are two shapes. there is one shape. the {s} is {c}.",
)


Obj = tuple[str, str, str]  # (colour, shape, position)


def _rng(seed: int, split: str, index: int) -> random.Random:
    """An independent stream per (seed, split, index); str seeds go through sha512, not ``hash``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return random.Random(f"shapes-{seed}-{split}-{index}")


def _a(word: str) -> str:
    """The indefinite article of ``word`` ("an orange", "a red")."""
    return "an" if word[0] in "aeiou" else "a"


def sample_scene(rng: random.Random) -> list[Obj]:
    """One or two objects (50/50), at distinct positions with distinct (colour, shape), in position order."""
    n = rng.randint(1, 2)
    positions = rng.sample(POSITIONS, n)
    kinds = rng.sample([(c, s) for c in COLOURS for s in SHAPES], n)
    objects = [(c, s, p) for (c, s), p in zip(kinds, positions, strict=True)]
    return sorted(objects, key=lambda o: POSITIONS.index(o[2]))


def render(objects: list[Obj], rng: random.Random, image_size: int = 64) -> Image.Image:
    """Draw the scene on a light, faintly noisy background."""
    base = np.array([rng.randint(225, 245) for _ in range(3)], dtype=np.int16)
    noise = np.frombuffer(rng.randbytes(image_size * image_size), dtype=np.uint8).reshape(
        image_size, image_size
    )
    pixels = base[None, None, :] + (noise[:, :, None].astype(np.int16) % 9 - 4)  # (H, W, 3), +-4 levels
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for colour, shape, position in objects:
        size = rng.uniform(0.27, 0.33) * image_size  # ~17-21 px at 64, ~9-10 px at 32
        cx, cy = _CENTRE[position]
        cx = (cx + rng.uniform(-0.025, 0.025)) * image_size
        cy = (cy + rng.uniform(-0.025, 0.025)) * image_size
        fill = tuple(max(0, min(255, v + rng.randint(-12, 12))) for v in _RGB[colour])
        h = size / 2
        if shape == "circle":
            draw.ellipse((cx - h, cy - h, cx + h, cy + h), fill=fill)
        elif shape == "square":
            h *= 0.9  # equal visual area with the circle
            draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
        else:
            draw.polygon([(cx, cy - h), (cx + h, cy + h * 0.85), (cx - h, cy + h * 0.85)], fill=fill)
    return image


def scene_string(objects: list[Obj]) -> str:
    """Canonical scene id, e.g. ``"red circle left; blue square right"``."""
    return "; ".join(f"{c} {s} {p}" for c, s, p in objects)


def caption(objects: list[Obj]) -> str:
    """The one canonical caption: ``"a red circle on the left and a blue square on the right."``"""
    return " and ".join(f"{_a(c)} {c} {s} {_WHERE[p]}" for c, s, p in objects) + "."


def _q(kind: str, question: str, answer: str, sentence: str) -> dict[str, str]:
    return {"type": kind, "question": question, "answer": answer, "sentence": sentence}


def _qa(objects: list[Obj], rng: random.Random) -> list[dict[str, str]]:
    """3-5 single-word QA pairs, each with its ``type`` (one of ``QA_TYPES``) and a
    full-sentence answer under ``"sentence"``."""
    n = len(objects)
    shapes = [s for _, s, _ in objects]
    cands: list[dict[str, str]] = []
    for c, s, p in objects:
        name = s if shapes.count(s) == 1 else f"{s} {_WHERE[p]}"
        cands.append(_q("colour", f"what colour is the {name}?", c, f"the {name} is {c}."))
        cands.append(_q("shape", f"what shape is {_WHERE[p]}?", s, f"there is a {s} {_WHERE[p]}."))
        cands.append(_q("position", f"where is the {c} {s}?", p, f"the {c} {s} is {_WHERE[p]}."))
    sentence = "there is one shape." if n == 1 else "there are two shapes."
    cands.append(_q("count", "how many shapes are there?", _NUMBER[n], sentence))
    c, s, _ = rng.choice(objects)
    ac = f"{_a(c)} {c}"
    cands.append(_q("exists", f"is there {ac} {s}?", "yes", f"yes, there is {ac} {s}."))
    present = {(c, s) for c, s, _ in objects}
    c, s = rng.choice([(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present])
    cands.append(_q("exists", f"is there {_a(c)} {c} {s}?", "no", f"no, there is no {c} {s}."))
    p = rng.choice(POSITIONS)
    s = rng.choice(SHAPES)
    w = _WHERE[p]
    if any(o[1:] == (s, p) for o in objects):
        cands.append(_q("exists", f"is there a {s} {w}?", "yes", f"yes, there is a {s} {w}."))
    else:
        cands.append(_q("exists", f"is there a {s} {w}?", "no", f"no, there is no {s} {w}."))
    return rng.sample(cands, rng.randint(3, 5))


def _relation(a: Obj, b: Obj) -> str | None:
    """``a`` relative to ``b`` when they share a row or a column, else None."""
    (ax, ay), (bx, by) = _GRID[a[2]], _GRID[b[2]]
    if ay == by:
        return _RELATIONS[0] if ax < bx else _RELATIONS[1]
    if ax == bx:
        return _RELATIONS[2] if ay < by else _RELATIONS[3]
    return None


def description(objects: list[Obj], rng: random.Random) -> str:
    """A detailed, always-true description of 3-5 sentences in varied phrasings."""
    n = len(objects)
    opening = rng.choice(_OPENINGS).format(
        n=_NUMBER[n], noun="shape" if n == 1 else "shapes", be="is" if n == 1 else "are"
    )
    body = [
        rng.choice(_OBJECT_SENTENCES).format(ac=f"{_a(c)} {c}", c=c, s=s, w=_WHERE[p]) for c, s, p in objects
    ]
    if n == 2 and (rel := _relation(*objects)) is not None:
        (c1, s1, _), (c2, s2, _) = objects
        body.append(f"the {c1} {s1} is {rel} the {c2} {s2}.")
    c, s, _ = rng.choice(objects)
    extras = [_PROPERTY[s].format(c=c), rng.choice(_CLOSINGS)]
    sentences = [opening, *body, *rng.sample(extras, rng.randint(1, 2))]
    return " ".join(sentences[:5])


def conversation(cap: str, desc: str, qa: list[dict[str, str]], rng: random.Random) -> list[dict[str, str]]:
    """1-3 LLaVA-format turns from the QA, description and caption; ``<image>`` in the first only."""
    turns = [(q["question"], q["sentence"]) for q in qa]
    turns.append((rng.choice(_DESCRIBE), desc))
    turns.append((rng.choice(_CAPTION_PROMPTS), cap))
    chosen = rng.sample(turns, rng.randint(1, 3))
    messages: list[dict[str, str]] = []
    for i, (question, answer) in enumerate(chosen):
        messages.append({"from": "human", "value": ("<image>\n" if i == 0 else "") + question})
        messages.append({"from": "gpt", "value": answer})
    return messages


def make_sample(
    index: int, split: str = "train", seed: int = 0, image_size: int = 64
) -> tuple[Image.Image, str, dict[str, Any]]:
    """Sample ``index`` of ``split``: (image, caption, record for ``key.json``)."""
    rng = _rng(seed, split, index)
    objects = sample_scene(rng)
    image = render(objects, rng, image_size)
    cap = caption(objects)
    qa = _qa(objects, rng)
    desc = description(objects, rng)
    c0, s0, _ = objects[0]
    record = {
        "key": f"{index:09d}",
        "caption": cap,
        "scene": scene_string(objects),
        "objects": [{"colour": c, "shape": s, "position": p} for c, s, p in objects],
        "labels": {"colour": COLOURS.index(c0), "shape": SHAPES.index(s0), "count": len(objects)},
        "qa": [{"question": q["question"], "answer": q["answer"], "type": q["type"]} for q in qa],
        "description": desc,
        "conversation": conversation(cap, desc, qa, rng),
    }
    return image, cap, record


def question_type(question: str) -> str:
    """The type of a shapes-data question (one of ``shapes.QA_TYPES``) from its wording; else ``"other"``."""
    q = " ".join(re.findall(r"[a-z]+", question.lower()))
    if q.startswith(("what colour", "what color", "which colour", "which color")):
        return "colour"
    if q.startswith(("what shape", "which shape")):
        return "shape"
    if q.startswith(("where is", "where are")):
        return "position"
    if q.startswith("how many"):
        return "count"
    if q.startswith(("is there", "are there")):
        return "exists"
    return "other"



def vocabulary() -> list[str]:
    """Every word any generated text can contain (lowercase, no punctuation), sorted."""
    texts = [
        *_OPENINGS,
        *_OBJECT_SENTENCES,
        *_CLOSINGS,
        *_RELATIONS,
        *_DESCRIBE,
        *_CAPTION_PROMPTS,
        *_QA_TEXT,
        *_PROPERTY.values(),
        *_WHERE.values(),
        *_NUMBER.values(),
        "a and shape shapes is are",
        *COLOURS,
        *SHAPES,
        *POSITIONS,
    ]
    words = set()
    for text in texts:
        words.update(re.findall(r"[a-z]+", re.sub(r"\{\w+\}", " ", text.lower())))
    return sorted(words)


def record_texts(record: dict[str, Any]) -> list[str]:
    """All texts of one record as plain sentences (no ``<image>`` marker)."""
    texts = [record["caption"], record["description"]]
    texts += [f"{q['question']} {q['answer']}." for q in record["qa"]]
    texts += [turn["value"].replace("<image>\n", "") for turn in record["conversation"]]
    return texts


def text_corpus(split: str = "train", num_samples: int = 20000, seed: int = 0) -> Iterator[str]:
    """The texts of the first ``num_samples`` samples of ``split``, for pretraining a tiny LM."""
    for index in range(num_samples):
        _, _, record = make_sample(index, split, seed, image_size=8)  # text does not depend on the size
        yield from record_texts(record)
