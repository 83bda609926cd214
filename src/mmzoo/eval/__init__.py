"""Evaluation shared across the zoo: evaluators listed in config (``conf/evaluation``) for
retrieval (+ ITM re-ranking), zero-shot classification, captioning, VQA and perplexity."""

from mmzoo.eval.base import EvalStep, Evaluation, Evaluator
from mmzoo.eval.captioning import CaptionEvaluator, VQAEvaluator
from mmzoo.eval.language import PerplexityEvaluator
from mmzoo.eval.retrieval import RetrievalEvaluator
from mmzoo.eval.zeroshot import ZeroShotEvaluator

__all__ = [
    "CaptionEvaluator",
    "EvalStep",
    "Evaluation",
    "Evaluator",
    "PerplexityEvaluator",
    "RetrievalEvaluator",
    "VQAEvaluator",
    "ZeroShotEvaluator",
]
