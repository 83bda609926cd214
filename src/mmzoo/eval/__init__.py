"""Evaluation shared across the zoo: evaluators listed in config (``conf/evaluation``) for
retrieval (+ ITM re-ranking), zero-shot classification, captioning, grounding, VQA and perplexity."""

from mmzoo.eval.base import EvalStep, Evaluation, Evaluator
from mmzoo.eval.captioning import CaptionEvaluator, VQAEvaluator
from mmzoo.eval.grounding import GroundingEvaluator
from mmzoo.eval.language import PerplexityEvaluator
from mmzoo.eval.retrieval import RetrievalEvaluator
from mmzoo.eval.zeroshot import ZeroShotEvaluator

__all__ = [
    "CaptionEvaluator",
    "EvalStep",
    "Evaluation",
    "Evaluator",
    "GroundingEvaluator",
    "PerplexityEvaluator",
    "RetrievalEvaluator",
    "VQAEvaluator",
    "ZeroShotEvaluator",
]
