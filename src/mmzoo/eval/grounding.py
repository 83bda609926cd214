"""Grounding metrics: does generated text name what is really in the scene?

Caption metrics (BLEU, CIDEr) reward the embedded captions' shared template; these do
not. A caption is parsed into (colour, shape, position) objects and compared with the
scene's ground-truth ``objects`` (the shard json); answers are scored per question type,
so a model that answers every colour question "red" shows up at chance on colour.

Definitions (all micro-averaged over the corpus, i.e. counts are summed before dividing):

- **scene accuracy**: the fraction of captions whose parsed objects are exactly the
  scene's objects (same set of complete triples; nothing missing, nothing extra).
- **object precision**: of the objects a caption names, the fraction that are in the
  scene with all three attributes right (one-to-one). ``1 - precision`` is the
  hallucination rate of CHAIR-i, with an object being a (colour, shape, position) triple.
  A corpus that names no object at all scores 0, so silence is not rewarded.
- **object recall**: of the scene's objects, the fraction named with all attributes right.
- **attribute accuracy** (colour, shape, position): a named object is matched to the
  ground-truth object that agrees with it on the *anchor* of that attribute, and the
  attribute is then right or wrong. Positions are unique within a scene, so colour and
  shape use the position as anchor; (colour, shape) pairs are unique too, so position
  uses them. A named object that has no anchor match (its anchor is missing or not in
  the scene) or does not state the attribute is left out of that attribute's count.
  E.g. "a blue circle on the left" for a red circle on the left counts for colour (wrong)
  and shape (right) and is left out of position (no blue circle in the scene).
- **VQA accuracy per question type** (colour, shape, position, count, exists): normalised
  exact match as in :func:`mmzoo.eval.captioning.vqa_accuracy`, per type; the type is the
  QA's ``type`` field when the data has one, else derived from the question text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from mmzoo.data.shapes import COLOURS, POSITIONS, SHAPES, question_type
from mmzoo.eval.base import EvalStep, Evaluator
from mmzoo.eval.captioning import normalise_answer
from mmzoo.types import META

# accuracy of a uniform guess per question type on the embedded data (blind baselines sit near it)
CHANCE = {
    "colour": 1 / len(COLOURS),
    "shape": 1 / len(SHAPES),
    "position": 1 / len(POSITIONS),
    "count": 1 / 2,
    "exists": 1 / 2,
}

_SHAPE_WORDS = {s: s for s in SHAPES} | {f"{s}s": s for s in SHAPES}
_POSITION_WORDS = {p: p for p in POSITIONS} | {"centre": "center", "middle": "center"}
_COLOUR_WORDS = {c: c for c in COLOURS}
_NEGATIONS = {"no", "not", "nothing", "without"}
# split points between object mentions: sentence ends, semicolons and the word "and"
_CLAUSE = re.compile(r"[.;!?]|\band\b")
_WORD = re.compile(r"[a-z]+")


class GroundObject(NamedTuple):
    """One object named in text; an attribute the text does not state is None."""

    colour: str | None
    shape: str | None
    position: str | None

    @property
    def complete(self) -> bool:
        return None not in self


def _as_object(obj: Mapping[str, str] | Sequence[str]) -> GroundObject:
    """A ground-truth object from the shard json (``{"colour", "shape", "position"}``) or a triple."""
    if isinstance(obj, Mapping):
        return GroundObject(obj["colour"], obj["shape"], obj["position"])
    colour, shape, position = obj
    return GroundObject(colour, shape, position)


def _relation_spans(words: list[str]) -> set[int]:
    """Indices of 'left'/'right' used in relations ("to the left of"), which are not positions."""
    out = set()
    for i, w in enumerate(words):
        if w in ("left", "right") and i + 1 < len(words) and words[i + 1] == "of":
            out.add(i)
    return out


def _parse_clause(words: list[str]) -> list[GroundObject]:
    """Objects of one clause: each shape word is an object; colours attach to the nearest
    shape after them (else before), positions to the nearest shape before them (else after)."""
    if any(w in _NEGATIONS for w in words):
        return []  # "there is no red circle", "nothing else": not a claim that something is there
    skip = _relation_spans(words)
    shapes = [(i, _SHAPE_WORDS[w]) for i, w in enumerate(words) if w in _SHAPE_WORDS]
    if not shapes:
        return []
    colours: dict[int, str | None] = {i: None for i, _ in shapes}
    positions: dict[int, str | None] = {i: None for i, _ in shapes}

    def nearest(i: int, forward: bool) -> int:
        after = [j for j, _ in shapes if j > i]
        before = [j for j, _ in shapes if j < i]
        first, second = (after, before[::-1]) if forward else (before[::-1], after)
        return (first or second)[0]

    for i, w in enumerate(words):
        if w in _COLOUR_WORDS:
            target = nearest(i, forward=True)
            if colours[target] is None:
                colours[target] = _COLOUR_WORDS[w]
        elif w in _POSITION_WORDS and i not in skip:
            target = nearest(i, forward=False)
            if positions[target] is None:
                positions[target] = _POSITION_WORDS[w]
    return [GroundObject(colours[i], s, positions[i]) for i, s in shapes]


def _merge(objects: list[GroundObject]) -> list[GroundObject]:
    """Fold repeated mentions: an object agreeing on every stated attribute with an earlier
    one ("a red circle on the left. the circle is round.") refines it instead of adding one."""
    out: list[GroundObject] = []
    for obj in objects:
        for k, prev in enumerate(out):
            if all(a is None or b is None or a == b for a, b in zip(obj, prev, strict=True)):
                out[k] = GroundObject(*(b if b is not None else a for a, b in zip(obj, prev, strict=True)))
                break
        else:
            out.append(obj)
    return out


def parse_caption(text: str) -> list[GroundObject]:
    """The objects a caption names, in order of mention.

    Built for the embedded grammar ("a red circle on the left and a blue square at the
    bottom.") and tolerant of variants: articles, word order within a clause ("on the
    left, there is a red circle", "the circle on the left is red"), plurals, "centre" /
    "middle", repeated mentions. Words it does not know are ignored; a clause with a
    negation names nothing; "left of" / "right of" are relations, not positions.
    """
    objects: list[GroundObject] = []
    for clause in _CLAUSE.split(text.lower()):
        objects += _parse_clause(_WORD.findall(clause))
    return _merge(objects)


@dataclass
class GroundingCounts:
    """Summable counts behind the caption metrics (one caption's, or a corpus's)."""

    captions: int = 0
    scenes_exact: int = 0
    named: int = 0  # objects the captions name
    named_correct: int = 0  # of those, in the scene with every attribute right (one-to-one)
    present: int = 0  # ground-truth objects
    colour_right: int = 0
    colour_judged: int = 0
    shape_right: int = 0
    shape_judged: int = 0
    position_right: int = 0
    position_judged: int = 0

    def __add__(self, other: GroundingCounts) -> GroundingCounts:
        return GroundingCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def metrics(self) -> dict[str, float]:
        def ratio(a: int, b: int) -> float:
            return a / b if b else 0.0

        return {
            "scene_accuracy": ratio(self.scenes_exact, self.captions),
            "object_precision": ratio(self.named_correct, self.named),
            "object_recall": ratio(self.named_correct, self.present),
            "colour_accuracy": ratio(self.colour_right, self.colour_judged),
            "shape_accuracy": ratio(self.shape_right, self.shape_judged),
            "position_accuracy": ratio(self.position_right, self.position_judged),
            "objects_per_caption": ratio(self.named, self.captions),
        }


def score_caption(text: str, objects: Sequence[Mapping[str, str] | Sequence[str]]) -> GroundingCounts:
    """Counts for one caption against its scene's ground-truth ``objects``."""
    named = parse_caption(text)
    truth = [_as_object(o) for o in objects]
    counts = GroundingCounts(captions=1, named=len(named), present=len(truth))
    counts.scenes_exact = int(all(o.complete for o in named) and sorted(named) == sorted(truth))
    unmatched = list(truth)
    for obj in named:
        if obj in unmatched:
            unmatched.remove(obj)
            counts.named_correct += 1
    by_position = {t.position: t for t in truth}
    by_kind = {(t.colour, t.shape): t for t in truth}
    for obj in named:
        anchor = by_position.get(obj.position) if obj.position is not None else None
        if anchor is not None and obj.colour is not None:
            counts.colour_judged += 1
            counts.colour_right += obj.colour == anchor.colour
        if anchor is not None and obj.shape is not None:
            counts.shape_judged += 1
            counts.shape_right += obj.shape == anchor.shape
        kind = by_kind.get((obj.colour, obj.shape))
        if kind is not None and obj.position is not None:
            counts.position_judged += 1
            counts.position_right += obj.position == kind.position
    return counts


def caption_grounding(
    captions: Sequence[str], scenes: Sequence[Sequence[Mapping[str, str] | Sequence[str]]]
) -> dict[str, float]:
    """Scene accuracy, object precision / recall and attribute accuracies over a corpus."""
    if len(captions) != len(scenes):
        raise ValueError(f"{len(captions)} captions for {len(scenes)} scenes")
    total = GroundingCounts()
    for text, objects in zip(captions, scenes, strict=True):
        total = total + score_caption(text, objects)
    return total.metrics()


def vqa_by_type(
    predictions: Sequence[str],
    answers: Sequence[str],
    questions: Sequence[str] | None = None,
    types: Sequence[str | None] | None = None,
) -> dict[str, float]:
    """``{"accuracy": all, "accuracy_<type>": ..., "count_<type>": n}`` for the types present.

    ``types`` (the data's own labels, e.g. each QA's ``type``) win where given; a missing
    entry falls back to :func:`question_type` of the question.
    """
    n = len(answers)
    if len(predictions) != n or (questions is not None and len(questions) != n) or (types is not None and len(types) != n):
        raise ValueError("predictions, answers, questions and types must have the same length")
    if types is None and questions is None:
        raise ValueError("give the questions or their types")
    labels = [
        (types[i] if types is not None and types[i] else None) or question_type(questions[i] if questions else "")
        for i in range(n)
    ]
    hits: dict[str, list[bool]] = {}
    for pred, answer, label in zip(predictions, answers, labels, strict=True):
        hits.setdefault(label, []).append(normalise_answer(pred) == normalise_answer(answer))
    out: dict[str, Any] = {"accuracy": sum(sum(h) for h in hits.values()) / n if n else 0.0}
    for label in sorted(hits):
        out[f"accuracy_{label}"] = sum(hits[label]) / len(hits[label])
        out[f"count_{label}"] = float(len(hits[label]))
    return out


class GroundingEvaluator(Evaluator):
    """Scene accuracy, object precision / recall and attribute accuracy of the module's captions
    against each scene's ground truth (records with ``objects``, as the embedded data has);
    reads the same generations as ``CaptionEvaluator`` (``EvalStep`` makes them once)."""

    blind = True
    example_fields = ()

    def __init__(self, prompt_key: str = "caption_prompt") -> None:
        super().__init__()
        self.prompt_key = prompt_key

    def update(self, step: EvalStep) -> None:
        records = step.batch.get(META) or []
        if self.prompt_key not in step.batch or not records or not all("objects" in r for r in records):
            return  # data without scene ground truth (a folder of captions): nothing to score
        for record, text in zip(records, step.generate(self.prompt_key), strict=True):
            self.rows.append({"key": record.get("key"), "caption": text, "objects": record["objects"]})

    def compute(self, module: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
        if not rows:
            return {}
        return caption_grounding([r["caption"] for r in rows], [r["objects"] for r in rows])
