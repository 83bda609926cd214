"""A folder of captioned pictures a user might have: varied free-form captions, simple images.

Why it exists: the zoo's promise "point it at your own images and captions" must be tested
(and shown in the README) offline, on captions whose words the embedded ``shapes`` data does
not have. Each picture is a rendered scene (a place, a time of day, one or two things in it:
a dog on a beach at sunset, two red cars on a city street at night), and its caption says so
in one of many styles, with synonyms (COCO-like sentences, alt text, photo titles), so no
template or word list can be learnt in place of the picture.

    python -m tests.data.captioned_scenes data/scenes/images --n 600   # images + same-name .txt
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

# place: sky colour, ground colour, horizon (fraction of the height), phrases ("<subject> <phrase>")
PLACES: dict[str, tuple[RGB, RGB, float, list[str]]] = {
    "beach": ((120, 190, 235), (232, 212, 150), 0.55, ["on a sandy beach", "on the beach", "by the seaside", "on the shore"]),
    "snow": ((190, 205, 225), (248, 248, 252), 0.45, ["in the snow", "on a snowy field", "in a snow-covered meadow"]),
    "forest": ((150, 185, 150), (45, 95, 40), 0.4, ["in a pine forest", "in the woods", "among tall trees"]),
    "city": ((165, 165, 175), (85, 85, 92), 0.6, ["on a busy city street", "downtown", "on an urban street"]),
    "lake": ((140, 195, 240), (35, 85, 175), 0.5, ["on a calm lake", "on the lake", "on a quiet pond"]),
    "desert": ((245, 205, 140), (215, 145, 65), 0.5, ["in the desert", "among sand dunes", "in a dry desert"]),
    "meadow": ((140, 200, 250), (105, 195, 75), 0.55, ["in a green meadow", "on a grassy field", "in the countryside"]),
}  # fmt: skip
TIMES: dict[str, list[str]] = {
    "day": ["", "", "on a sunny day", "in the afternoon"],
    "sunset": ["at sunset", "at dusk", "in the evening light"],
    "night": ["at night", "after dark", "under the stars"],
}
COLOURS: dict[str, RGB] = {
    "red": (205, 35, 35), "blue": (35, 75, 210), "yellow": (240, 210, 30), "white": (245, 245, 245),
    "black": (25, 25, 25), "brown": (130, 80, 35), "grey": (128, 128, 128), "orange": (240, 130, 20),
    "green": (40, 160, 60), "pink": (240, 130, 180),
}  # fmt: skip
# subject: nouns (singular, plural), its possible colours, what it does ("a dog <verb> on the beach")
SUBJECTS: dict[str, tuple[list[tuple[str, str]], list[str], list[str]]] = {
    "dog": ([("dog", "dogs"), ("puppy", "puppies")], ["brown", "black", "white"], ["running", "playing", "resting", ""]),
    "cat": ([("cat", "cats"), ("kitten", "kittens")], ["orange", "grey", "black"], ["sitting", "sleeping", "stretching", ""]),
    "car": ([("car", "cars"), ("sedan", "sedans")], ["red", "blue", "yellow", "white"], ["parked", "driving", ""]),
    "boat": ([("sailboat", "sailboats"), ("small boat", "small boats")], ["white", "red", "blue"], ["drifting", "floating", ""]),
    "balloon": ([("hot-air balloon", "hot-air balloons"), ("balloon", "balloons")], ["red", "yellow", "pink"],
                ["floating", "rising", ""]),
    "umbrella": ([("umbrella", "umbrellas"), ("parasol", "parasols")], ["red", "blue", "green", "yellow"], ["open", ""]),
    "tent": ([("tent", "tents"), ("camping tent", "camping tents")], ["orange", "green", "blue"], ["pitched", ""]),
    "horse": ([("horse", "horses"), ("pony", "ponies")], ["brown", "white", "black"], ["grazing", "galloping", "standing", ""]),
    "tree": ([("lone tree", "trees"), ("tree", "trees")], ["green"], ["growing", "standing", ""]),
    "kite": ([("kite", "kites")], ["red", "yellow", "blue", "pink"], ["flying", "soaring", ""]),
}  # fmt: skip
NUMBER = {1: ["a", "one", "a single"], 2: ["two", "a pair of", "two"]}
STYLES = [
    "{Subject} {verb}{place}{time}.",
    "{Subject} {verb}{place}{time}.",
    "Photo of {subject}{place}{time}.",
    "{Place}{time}, with {subject}.",
    "{Time}: {subject}{place}.",
    "There {is} {subject}{place}{time}.",
    "{subject}{place}{time}",
    "A picture showing {subject}{place}{time}.",
    "View of {subject}{place}{time}.",
]


@dataclass(frozen=True)
class Scene:
    place: str
    time: str
    subject: str
    colour: str
    count: int


def random_scene(rng: random.Random) -> Scene:
    subject = rng.choice(list(SUBJECTS))
    return Scene(rng.choice(list(PLACES)), rng.choice(list(TIMES)), subject, rng.choice(SUBJECTS[subject][1]),
                 rng.choice([1, 1, 2]))  # fmt: skip


def caption(scene: Scene, rng: random.Random) -> str:
    """One free-form caption of ``scene``, in a random style with random synonyms."""
    nouns, _, verbs = SUBJECTS[scene.subject]
    singular, plural = rng.choice(nouns)
    noun = singular if scene.count == 1 else plural
    number = rng.choice(NUMBER[scene.count])
    colour = "" if scene.subject == "tree" else f"{scene.colour} "
    if number == "a" and (colour or noun)[0] in "aeiou":
        number = "an"
    subject = f"{number} {colour}{noun}"
    verb = rng.choice(verbs)
    place = rng.choice(PLACES[scene.place][3])
    time = rng.choice(TIMES[scene.time])
    style = rng.choice(STYLES)
    if "{Time}" in style and not time:
        style = STYLES[0]
    text = style.format(
        Subject=subject[0].upper() + subject[1:], subject=subject, verb=f"{verb} " if verb else "",
        place=f" {place}" if not style.startswith("{Subject}") else place, Place=place[0].upper() + place[1:],
        time=f" {time}" if time else "", Time=time[:1].upper() + time[1:], **{"is": "is" if scene.count == 1 else "are"},
    )  # fmt: skip
    return " ".join(text.split()).replace(" ,", ",")


def _shade(colour: RGB, factor: float, tint: RGB | None = None, mix: float = 0.0) -> RGB:
    base = tuple(int(c * (1 - mix) + t * mix) for c, t in zip(colour, tint, strict=True)) if tint else colour
    return tuple(max(0, min(255, int(c * factor))) for c in base)  # type: ignore[return-value]


def draw_subject(draw: ImageDraw.ImageDraw, kind: str, colour: RGB, x: float, y: float, s: float) -> None:
    """One thing of ``kind``, about ``s`` px wide, standing at (x, y) (its base centre)."""
    dark = (20, 20, 20)
    if kind in ("dog", "cat", "horse"):
        legs = s * (0.5 if kind == "horse" else 0.25)
        body_h = s * 0.35
        draw.rectangle([x - s * 0.4, y - legs - body_h, x + s * 0.4, y - legs], fill=colour)
        for dx in (-0.35, -0.2, 0.2, 0.35):
            draw.rectangle([x + dx * s - 1, y - legs, x + dx * s + 1, y], fill=colour)
        hx, hy, r = x + s * 0.45, y - legs - body_h - s * 0.1, s * 0.18
        draw.ellipse([hx - r, hy - r, hx + r, hy + r], fill=colour)
        if kind == "cat":  # pointed ears
            draw.polygon([(hx - r, hy - r * 0.5), (hx - r * 0.3, hy - r * 2), (hx, hy - r * 0.5)], fill=colour)
            draw.polygon([(hx, hy - r * 0.5), (hx + r * 0.6, hy - r * 2), (hx + r, hy - r * 0.5)], fill=colour)
        if kind == "horse":  # a neck up to the head
            draw.polygon([(x + s * 0.25, y - legs - body_h), (hx, hy - r), (hx + r, hy), (x + s * 0.4, y - legs)],
                         fill=colour)  # fmt: skip
    elif kind == "car":
        draw.rectangle([x - s * 0.5, y - s * 0.4, x + s * 0.5, y - s * 0.12], fill=colour)
        draw.rectangle([x - s * 0.28, y - s * 0.62, x + s * 0.25, y - s * 0.4], fill=colour)
        for dx in (-0.3, 0.3):
            draw.ellipse([x + dx * s - s * 0.13, y - s * 0.25, x + dx * s + s * 0.13, y], fill=dark)
    elif kind == "boat":
        draw.polygon([(x - s * 0.5, y - s * 0.25), (x + s * 0.5, y - s * 0.25), (x + s * 0.35, y), (x - s * 0.35, y)],
                     fill=colour)  # fmt: skip
        draw.polygon([(x, y - s * 1.1), (x, y - s * 0.3), (x + s * 0.45, y - s * 0.3)], fill=(250, 250, 250))
        draw.line([(x, y - s * 1.1), (x, y - s * 0.25)], fill=dark, width=1)
    elif kind == "balloon":
        top = y - s * 1.6
        draw.ellipse([x - s * 0.4, top, x + s * 0.4, top + s * 0.9], fill=colour)
        draw.rectangle([x - s * 0.1, top + s * 1.05, x + s * 0.1, top + s * 1.25], fill=(120, 80, 40))
    elif kind == "umbrella":
        draw.pieslice([x - s * 0.5, y - s * 1.0, x + s * 0.5, y - s * 0.2], 180, 360, fill=colour)
        draw.line([(x, y - s * 0.6), (x, y)], fill=dark, width=2)
    elif kind == "tent":
        draw.polygon([(x - s * 0.5, y), (x, y - s * 0.7), (x + s * 0.5, y)], fill=colour)
        draw.polygon([(x - s * 0.1, y), (x, y - s * 0.35), (x + s * 0.1, y)], fill=dark)
    elif kind == "tree":
        draw.rectangle([x - s * 0.07, y - s * 0.4, x + s * 0.07, y], fill=(100, 60, 25))
        draw.ellipse([x - s * 0.4, y - s * 1.2, x + s * 0.4, y - s * 0.35], fill=colour)
    elif kind == "kite":
        cy = y - s * 1.6
        draw.polygon([(x, cy - s * 0.4), (x + s * 0.3, cy), (x, cy + s * 0.4), (x - s * 0.3, cy)], fill=colour)
        draw.line([(x, cy + s * 0.4), (x - s * 0.2, y - s * 0.5), (x + s * 0.1, y - s * 0.2)], fill=dark, width=1)


def render(scene: Scene, rng: random.Random, size: int = 64) -> Image.Image:
    """The picture of ``scene``: sky and ground of the place in the time's light, the thing(s) on it."""
    sky, ground, horizon, _ = PLACES[scene.place]
    factor, tint, mix = {"day": (1.0, None, 0.0), "sunset": (0.9, (250, 120, 60), 0.55), "night": (0.35, (20, 25, 70), 0.5)}[
        scene.time
    ]
    image = Image.new("RGB", (size, size), _shade(sky, factor, tint, mix))
    draw = ImageDraw.Draw(image)
    h = int(size * (horizon + rng.uniform(-0.05, 0.05)))
    draw.rectangle([0, h, size, size], fill=_shade(ground, factor if scene.time != "sunset" else 0.85))
    if scene.time == "night":
        for _ in range(6):
            sx, sy = rng.uniform(0, size), rng.uniform(0, h * 0.8)
            draw.point((sx, sy), fill=(240, 240, 200))
    if scene.time == "sunset":
        r = size * 0.1
        cx = rng.uniform(size * 0.2, size * 0.8)
        draw.ellipse([cx - r, h - r, cx + r, h + r], fill=(255, 200, 80))
    if scene.place == "city":  # buildings on the horizon
        for bx in range(0, size, size // 5):
            draw.rectangle([bx + 1, h - rng.uniform(0.15, 0.35) * size, bx + size // 5 - 2, h], fill=_shade((110, 110, 120), factor))
    if scene.place == "forest":  # dark trees on the horizon
        for bx in range(0, size + 1, size // 6):
            draw.polygon([(bx - 5, h), (bx, h - size * 0.25), (bx + 5, h)], fill=_shade((25, 60, 25), factor))
    colour = COLOURS[scene.colour]
    slots = [rng.uniform(0.3, 0.7)] if scene.count == 1 else [rng.uniform(0.2, 0.35), rng.uniform(0.65, 0.8)]
    for fx in slots:
        s = size * rng.uniform(0.3, 0.38)
        y = rng.uniform(h + (size - h) * 0.4, size - 2)
        draw_subject(draw, scene.subject, _shade(colour, max(factor, 0.6)), fx * size, y, s)
    return image


def make_folder(out: str | Path, n: int, seed: int = 0, size: int = 64) -> list[str]:
    """``n`` pictures ``NNNNN.png`` with same-name ``.txt`` captions in ``out``; returns the captions."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    captions = []
    for i in range(n):
        scene = random_scene(rng)
        text = caption(scene, rng)
        render(scene, rng, size).save(out / f"{i:05d}.png")
        (out / f"{i:05d}.txt").write_text(text + "\n", encoding="utf-8")
        captions.append(text)
    return captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write NNNNN.png + NNNNN.txt into")
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    captions = make_folder(args.out, args.n, args.seed, args.size)
    print(f"{len(captions)} captioned pictures in {args.out}, e.g.", *captions[:5], sep="\n  ")


if __name__ == "__main__":
    main()
