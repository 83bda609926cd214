"""The base LightningModule every zoo model derives from.

It owns what is the same for every architecture, so a family module only says how a
batch becomes a loss and what the evaluators may ask of it:

- freezing by recipe: frozen parts get ``requires_grad=False`` and stay in eval mode, so
  dropout and norm statistics never move, and checkpoints leave them out (they are
  rebuilt from their source; a manifest of their hashes makes a resume on top of other
  frozen weights fail loudly instead of continuing on the wrong model);
- the optimiser over trainable parameters only (weight decay only on matrices, as nanoGPT),
  with an optional scheduler whose length comes from the trainer;
- training / validation steps around the family's ``loss``, and evaluation through the
  configured ``Evaluation`` (``mmzoo.eval``);
- moving only tensors to the device: a batch's per-sample records stay where they are.

What ``mmzoo.run`` reads after a run is declared here: ``results``, ``examples``,
``lineage``, ``counters`` and ``parameter_counts()``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from mmzoo import rundir
from mmzoo.eval.base import Evaluation
from mmzoo.types import INPUT_IDS, PIXEL_VALUES

log = logging.getLogger(__name__)
FROZEN_MANIFEST = "mmzoo_frozen_parts"


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts (shared parameters counted once)."""
    params = {id(p): p for p in module.parameters()}.values()
    return {
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "total": sum(p.numel() for p in params),
    }


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split into decayed (matrices, embeddings) and not (biases, norms)."""
    trainable = list({id(p): p for p in module.parameters() if p.requires_grad}.values())
    return [
        {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ]


def batch_size(batch: Mapping[str, Any]) -> int:
    """Samples in a collated batch (for Lightning's ThroughputMonitor)."""
    key = PIXEL_VALUES if PIXEL_VALUES in batch else INPUT_IDS
    return int(batch[key].shape[0])


def weights_hash(module: nn.Module) -> str:
    """A content hash of a module's state (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts) to ``device``; lists of records and strings untouched."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


class ZooModule(L.LightningModule):
    """Wires a model (``self.model``), freezing, optimisation and evaluation together.

    ``freeze`` names sub-modules of ``self.model`` (dotted paths, e.g. ``["encoder", "llm"]``)
    that the recipe keeps fixed; parts may add their own (a bridge's frozen Q-Former).
    ``pretrained_parts`` loads sub-modules from finished runs, ``{"bridge.qformer": <run>}``
    (nested mappings are flattened); zoo references must already be made (``mmzoo.zoo``):
    building a module never trains another one.

    Subclasses implement ``image_transform()``, ``collator(train)`` and ``loss(batch)``,
    plus what their evaluators ask for (see ``mmzoo.eval``).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        freeze: Sequence[str] = (),
        pretrained_parts: Mapping[str, Any] | None = None,
        evaluation: Evaluation | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.lineage: dict[str, str] = rundir.load_pretrained_parts(model, pretrained_parts or {})
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.frozen_names = list(freeze)
        self._frozen = self._resolve_frozen(self.frozen_names)
        for module in self._frozen:
            module.requires_grad_(False)
            module.eval()
        self.evaluation = evaluation or Evaluation({})
        self.train_losses: list[float] = []
        self.results: dict[str, float] = {}
        self.examples: list[dict[str, Any]] = []
        self.counters: dict[str, int] = {}
        self._frozen_manifest: dict[str, str] | None = None

    # ---- what a family provides -----------------------------------------------------
    def image_transform(self) -> Callable:
        raise NotImplementedError

    def collator(self, train: bool = True) -> Callable:
        raise NotImplementedError

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """``(loss, extra values to log)`` for one batch."""
        raise NotImplementedError

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

    def frozen_parts(self) -> dict[str, nn.Module]:
        """Frozen sub-modules by their path in ``self.model``."""
        names = {id(m): n for n, m in self.model.named_modules()}
        return {names[id(m)]: m for m in self._frozen if id(m) in names}

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
        if self.logger is not None:
            self.logger.log_hyperparams({f"params/{k}": v for k, v in counts.items()})

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return to_device(batch, device)

    # ---- steps ----------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, extra = self.loss(batch)
        size = batch_size(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in extra.items():
            self.log(f"train/{name}", value, batch_size=size)
        self.train_losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss, _ = self.loss(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch_size(batch), sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self.evaluation.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluation.update(self, batch)

    def on_test_epoch_end(self) -> None:
        self.results = self.evaluation.compute(self)  # already gathered from every rank
        self.examples = self.evaluation.examples(limit=64)
        self.log_dict({k: float(v) for k, v in self.results.items()}, rank_zero_only=True)

    # ---- checkpoints: trainable state only, frozen parts named and hashed -------------
    def frozen_manifest(self) -> dict[str, str]:
        """``{part path: weights hash}`` of the frozen parts (computed once: they never change)."""
        if self._frozen_manifest is None:
            self._frozen_manifest = {name: weights_hash(m) for name, m in self.frozen_parts().items()}
        return self._frozen_manifest

    def _frozen_keys(self) -> set[str]:
        return {f"model.{name}.{k}" for name, m in self.frozen_parts().items() for k in m.state_dict()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        frozen = self._frozen_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}
        checkpoint[FROZEN_MANIFEST] = self.frozen_manifest()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(FROZEN_MANIFEST)
        if saved is not None:
            current = self.frozen_manifest()
            differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
            if differ:
                raise ValueError(
                    f"cannot resume: the frozen parts {differ} are not the ones this checkpoint was trained on "
                    "(their weights or the recipe's freezing changed). Start a new run, or restore those parts."
                )
        own = self.state_dict()
        for key in self._frozen_keys():  # rebuilt from their source, not stored
            checkpoint["state_dict"].setdefault(key, own[key])
