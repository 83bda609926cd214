"""Training objectives as stateless functions: they hold no parameters (heads live on models)."""

from mmzoo.objectives.itc import ContrastiveLogits, contrastive_logits, itc_loss, itc_loss_from_logits
from mmzoo.objectives.itm import HardNegatives, ItmBatch, itm_loss, itm_pairs, mine_hard_negatives
from mmzoo.objectives.lm import decoder_targets, lm_loss

__all__ = [
    "ContrastiveLogits",
    "HardNegatives",
    "ItmBatch",
    "contrastive_logits",
    "decoder_targets",
    "itc_loss",
    "itc_loss_from_logits",
    "itm_loss",
    "itm_pairs",
    "lm_loss",
    "mine_hard_negatives",
]
