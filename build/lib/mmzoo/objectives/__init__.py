"""Training objectives as stateless functions: they hold no parameters (heads live on models)."""

from mmzoo.objectives.itc import itc_loss
from mmzoo.objectives.lm import lm_loss

__all__ = ["itc_loss", "lm_loss"]
