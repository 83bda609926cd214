"""Captioning and VQA metrics shared by every generative model.

BLEU-4 and ROUGE-L come from torchmetrics; CIDEr (which torchmetrics lacks) from
pycocoevalcap, the implementation COCO leaderboards report. Text is normalised the same
way for all of them (lower case, punctuation stripped) so the numbers are comparable;
pycocoevalcap's PTB tokenizer needs Java, so it is not used.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

from torchmetrics.functional.text import bleu_score
from torchmetrics.text import ROUGEScore

from mmzoo.eval.base import EvalStep, Evaluator
from mmzoo.types import CAPTIONS, META

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_ARTICLES = {"a", "an", "the"}
_NUMBERS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5"}


def normalise_caption(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def normalise_answer(text: str) -> str:
    """VQA-style answer normalisation: case, punctuation, articles, number words."""
    words = [_NUMBERS.get(w, w) for w in normalise_caption(text).split() if w not in _ARTICLES]
    return " ".join(words)


def cider(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    from pycocoevalcap.cider.cider import Cider

    gts = {i: [normalise_caption(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [normalise_caption(p) or "<empty>"] for i, p in enumerate(predictions)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def caption_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-4, ROUGE-L (F) and CIDEr of predictions against one or more references each."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference lists")
    if not predictions:
        return {}
    preds = [normalise_caption(p) for p in predictions]
    refs = [[normalise_caption(r) for r in rs] for rs in references]
    rouge = ROUGEScore(rouge_keys="rougeL")(preds, refs)["rougeL_fmeasure"]
    return {
        "bleu4": float(bleu_score(preds, refs, n_gram=4, smooth=True)),
        "rouge_l": float(rouge),
        "cider": cider(predictions, references),
    }


def vqa_accuracy(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """Normalised exact match (case, punctuation, articles and number words folded)."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    if not answers:
        return 0.0
    hits = sum(normalise_answer(p) == normalise_answer(a) for p, a in zip(predictions, answers, strict=True))
    return hits / len(answers)


class CaptionEvaluator(Evaluator):
    """BLEU-4, ROUGE-L and CIDEr of the module's captions (prompts under ``caption_prompt``)
    against the sample's caption. CIDEr on templated captions rewards the template: read it
    beside the grounding metrics and the blind baselines."""

    blind = True
    example_fields = ("captions", "generated_captions")

    def __init__(self, prompt_key: str = "caption_prompt") -> None:
        super().__init__()
        self.prompt_key = prompt_key

    def update(self, step: EvalStep) -> None:
        if self.prompt_key not in step.batch:
            return
        generated = step.generate(self.prompt_key)
        for i, text in enumerate(generated):
            record = step.batch[META][i] if META in step.batch else {}
            self.rows.append({"key": record.get("key"), "captions": step.batch[CAPTIONS][i], "generated_captions": text})

    def compute(self, module: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
        return caption_metrics([r["generated_captions"] for r in rows], [[r["captions"]] for r in rows])


class VQAEvaluator(Evaluator):
    """Normalised exact-match accuracy of short answers (prompts under ``vqa_prompt``), overall
    and per question type when the eval collator provides ``question_types``."""

    blind = True
    example_fields = ("questions", "answers", "generated_answers")

    def __init__(self, prompt_key: str = "vqa_prompt") -> None:
        super().__init__()
        self.prompt_key = prompt_key

    def update(self, step: EvalStep) -> None:
        if self.prompt_key not in step.batch:  # the data has no questions (e.g. a folder of captions)
            return
        generated = step.generate(self.prompt_key)
        types = step.batch.get("question_types") or [None] * len(generated)
        for i, text in enumerate(generated):
            record = step.batch[META][i] if META in step.batch else {}
            self.rows.append(
                {"key": record.get("key"), "questions": step.batch["questions"][i], "answers": step.batch["answers"][i],
                 "generated_answers": text, "type": types[i]}
            )

    def compute(self, module: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
        if not rows:
            return {}
        results = {"accuracy": vqa_accuracy([r["generated_answers"] for r in rows], [r["answers"] for r in rows])}
        for kind in sorted({r["type"] for r in rows if r["type"]}):
            subset = [r for r in rows if r["type"] == kind]
            results[f"{kind}_accuracy"] = vqa_accuracy([r["generated_answers"] for r in subset], [r["answers"] for r in subset])
        return results
