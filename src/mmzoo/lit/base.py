"""The base LightningModule every zoo model derives from.

It owns what is the same for every architecture: which parts a recipe freezes (frozen
parts get ``requires_grad=False`` and stay in eval mode, so dropout and norm statistics
never move), the optimiser over trainable parameters only (weight decay only on
matrices, as nanoGPT), an optional scheduler whose length comes from the trainer, and
the parameter counts a run reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from mmzoo import runs

log = logging.getLogger(__name__)


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts (shared parameters counted once)."""
    params = {id(p): p for p in module.parameters()}.values()
    return {
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "total": sum(p.numel() for p in params),
    }


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split into decayed (matrices, embeddings) and not (biases, norms)."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    return [
        {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]


class ZooModule(L.LightningModule):
    """Wires a model (``self.model``), freezing, optimisation and logging together.

    ``freeze`` names sub-modules of ``self.model`` (dotted paths, e.g. ``["encoder", "llm"]``)
    that the recipe keeps fixed; parts may add their own (a bridge's frozen Q-Former).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        freeze: Sequence[str] = (),
        init_from_runs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        # sub-modules taken from other runs' weights, e.g. {bridge: {qformer: zoo:qformer}}
        self.lineage = runs.init_from_runs(model, init_from_runs or {})
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.frozen_names = list(freeze)
        self._frozen = self._resolve_frozen(self.frozen_names)
        for module in self._frozen:
            module.requires_grad_(False)
            module.eval()
        self.train_losses: list[float] = []

    # ---- freezing -------------------------------------------------------------------
    def _resolve_frozen(self, names: Iterable[str]) -> list[nn.Module]:
        modules = []
        for name in names:
            try:
                modules.append(self.model.get_submodule(name))
            except AttributeError:
                valid = sorted(n for n, _ in self.model.named_children())
                raise ValueError(f"cannot freeze {name!r}: the model has parts {valid}") from None
        for child in self.model.modules():
            frozen_modules = getattr(child, "frozen_modules", None)
            if callable(frozen_modules) and child is not self.model:
                modules.extend(frozen_modules())
        return modules

    def train(self, mode: bool = True) -> ZooModule:
        """Switch modes, but keep frozen parts in eval mode whatever Lightning asks."""
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def parameter_counts(self) -> dict[str, int]:
        return count_parameters(self.model)

    # ---- optimisation ---------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        weight_decay = getattr(self.optimizer_factory, "keywords", {}).get("weight_decay", 0.0)
        groups = [g for g in parameter_groups(self.model, weight_decay) if g["params"]]
        if not groups:
            raise ValueError("nothing to train: every parameter is frozen by the recipe")
        optimizer = self.optimizer_factory(params=groups)
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, num_training_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_fit_start(self) -> None:
        counts = self.parameter_counts()
        log.info("parameters: %s trainable of %s total", f"{counts['trainable']:,}", f"{counts['total']:,}")
        if self.logger is not None:
            self.logger.log_hyperparams({f"params/{k}": v for k, v in counts.items()})

    def record_loss(self, loss: torch.Tensor, batch_size: int) -> None:
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.train_losses.append(float(loss.detach()))
