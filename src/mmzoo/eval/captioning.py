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

from torchmetrics.functional.text import bleu_score
from torchmetrics.text import ROUGEScore

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
