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
- moving only tensors to the device: a batch's per-sample records stay where they are;
- numerical faults: a NaN/inf loss stops the run (``nonfinite="stop"``, the last good
  checkpoint is kept) or skips the step and counts it (``nonfinite="skip"``);
- checkpoints that resume exactly: besides Lightning's optimizer, scheduler and loop
  state, the RNG states, the loss history and the counters (``mmzoo.lit.checkpoint``
  writes them atomically).

What ``mmzoo.run`` reads after a run is declared here: ``results``, ``examples``,
``lineage``, ``counters`` and ``parameter_counts()``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from mmzoo import rundir
from mmzoo.eval.base import Evaluation
from mmzoo.types import INPUT_IDS, PIXEL_VALUES

log = logging.getLogger(__name__)
FROZEN_MANIFEST = "mmzoo_frozen_parts"
TRAINING_STATE = "mmzoo_training_state"


class NonFiniteLoss(FloatingPointError):
    """A NaN or inf loss (or weights) under ``nonfinite="stop"``: the run ends, its last good checkpoint stays."""


def rng_states() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states, as types ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


@contextmanager
def kept_for_backward(module: nn.Module) -> Iterator[dict[int, int]]:
    """The storages autograd keeps for backward while the block runs (data pointer -> bytes),
    the module's own parameters excepted: the activation memory a forward costs until its
    backward, which is what activation checkpointing trades for compute."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield kept


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


def compile_parts(model: nn.Module, parts: Sequence[str] | None = None, **options: Any) -> list[str]:
    """``torch.compile`` the parts a step runs (``None``: every child of ``model``), in place
    (``nn.Module.compile``): parameters, state-dict keys and checkpoints stay those of the
    eager model, so a compiled run resumes, exports and loads like any other.

    Only each part's ``forward`` is compiled; generation calls the language model's own
    decoding loop, whose growing shapes would recompile every step, and stays eager.
    ``options`` are ``torch.compile``'s (``mode``, ``backend``, ``dynamic``, ``fullgraph``).
    Returns the compiled part names."""
    children = dict(model.named_children())
    names = list(children if parts is None else parts)
    unknown = [name for name in names if name not in children]
    if unknown:
        raise ValueError(f"cannot compile {unknown}: the model has parts {sorted(children)}")
    for name in names:
        children[name].compile(**options)
    return names


class ZooModule(L.LightningModule):
    """Wires a model (``self.model``), freezing, optimisation and evaluation together.

    ``freeze`` names sub-modules of ``self.model`` (dotted paths, e.g. ``["encoder", "llm"]``)
    that the recipe keeps fixed; parts may add their own (a bridge's frozen Q-Former).
    ``pretrained_parts`` loads sub-modules from finished runs, ``{"bridge.qformer": <run>}``
    (nested mappings are flattened); zoo references must already be made (``mmzoo.zoo``):
    building a module never trains another one.

    Subclasses implement ``image_transform()``, ``collator(train)`` and ``loss(batch)``,
    plus what their evaluators ask for (see ``mmzoo.eval``).

    Run options set as attributes (``mmzoo.run`` sets them from the config): ``nonfinite``
    (``"stop"`` or ``"skip"``), and ``part_sources`` (part path -> where its weights come from:
    a run directory, a hub id), named with each frozen part's hash in checkpoints.
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
        self.nonfinite = "stop"
        self.part_sources: dict[str, str] = {}
        self._frozen_manifest: dict[str, dict[str, str]] | None = None
        self._rng_to_restore: dict[str, Any] | None = None

    # ---- what a family provides -----------------------------------------------------
    def image_transform(self) -> Callable | None:
        """PIL image -> tensor for this model's encoder; None for a model that reads no pixels."""
        raise NotImplementedError

    def collator(self, train: bool = True) -> Callable:
        raise NotImplementedError

    def image_stats(self) -> tuple[Sequence[float], Sequence[float]] | None:
        """The (mean, std) images are normalised with; None for a model that reads no images."""
        return None

    def example_images(self) -> dict[str, torch.Tensor]:
        """The test images the evaluation kept, as the model saw them but un-normalised to
        [0, 1]: the run's examples/, shown side by side on the leaderboard's page."""
        stats = self.image_stats()
        if stats is None:
            return {}
        mean, std = (torch.tensor(s, dtype=torch.float32)[:, None, None] for s in stats)
        return {key: (pixels.float() * std + mean).clamp(0, 1) for key, pixels in self.evaluation.images.items()}

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

    def compile_parts(self, parts: Sequence[str] | None = None, **options: Any) -> list[str]:
        """``torch.compile`` the model's parts in place (the module-level ``compile_parts``)."""
        return compile_parts(self.model, parts, **options)

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
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        loss, extra = self.loss(batch)
        if self._skip_nonfinite(loss, batch_idx):
            return None  # Lightning skips backward and the optimizer step
        if self._logs_this_step():  # a self.log call costs about a millisecond: only where the logger writes
            size = batch_size(batch)
            self.log("train/loss", loss, prog_bar=True, batch_size=size)
            for name, value in extra.items():
                self.log(f"train/{name}", value, batch_size=size)
        self.train_losses.append(float(loss.detach()))
        return loss

    def _logs_this_step(self) -> bool:
        """Whether the logger writes this training step (every ``trainer.log_every_n_steps``): Lightning
        would move each logged value's record to the device and deep-copy its metadata on every call,
        which cost a CPU step of the default CLIP several percent, for values never written."""
        trainer = self._trainer
        connector = getattr(trainer, "_logger_connector", None)
        if connector is None:
            return True
        return bool(connector.should_update_logs)

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

    # ---- numerical faults --------------------------------------------------------------
    def _skip_nonfinite(self, loss: torch.Tensor, batch_idx: int) -> bool:
        """True to skip this step (``nonfinite="skip"``); raises ``NonFiniteLoss`` under "stop".

        Every rank takes the same decision (a rank skipping alone would hang DDP's all-reduce).
        """
        bad = not bool(torch.isfinite(loss.detach()).all())  # a host sync, as the loss log below
        trainer = self._trainer
        if trainer is not None:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return False
        step = self.global_step
        if self.nonfinite == "skip" and self.weights_finite():
            self.counters["nonfinite_steps_skipped"] = self.counters.get("nonfinite_steps_skipped", 0) + 1
            log.warning("loss is %s at step %d: step skipped (nonfinite=skip; %d so far)", float(loss.detach()),
                        step, self.counters["nonfinite_steps_skipped"])  # fmt: skip
            return True
        callback = getattr(trainer, "checkpoint_callback", None) if trainer is not None else None
        last = getattr(callback, "last_model_path", "")
        kept = os.path.realpath(last) if last else "none saved yet"  # last.ckpt links to the newest
        cause = "loss" if self.weights_finite() else "weights (skipping steps cannot mend them)"
        raise NonFiniteLoss(
            f"non-finite {cause}: loss={float(loss.detach())} at step {step} (batch {batch_idx}); the run stops "
            f"here and keeps its last good checkpoint ({kept}). Lower the learning rate (model.optimizer.lr), "
            "clip gradients (trainer.gradient_clip_val) or train in full precision (trainer.precision=32-true), "
            "then continue from that checkpoint with resume=<run dir>; or skip such steps with nonfinite=skip"
        )

    def weights_finite(self) -> bool:
        """Whether every trainable parameter is finite (one reduction over them)."""
        params = [p.detach() for p in self.model.parameters() if p.requires_grad]
        return not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all())

    # ---- checkpoints: trainable state only, frozen parts named and hashed -------------
    def source_of(self, path: str) -> str:
        """Where the weights of the part at ``path`` come from: the longest ``part_sources`` entry
        that holds it (``bridge`` holds ``bridge.qformer``), else the whole model's (``pretrained``)."""
        holders = [k for k in self.part_sources if path == k or path.startswith(k + ".") or k == "pretrained"]
        holders.sort(key=lambda k: (k != "pretrained", len(k)))
        return self.part_sources[holders[-1]] if holders else "built from config (random init)"

    def frozen_manifest(self) -> dict[str, dict[str, str]]:
        """``{part path: {"source", "sha256"}}`` of the frozen parts (hashed once: they never change)."""
        if self._frozen_manifest is None:
            self._frozen_manifest = {
                name: {"source": self.source_of(name), "sha256": weights_hash(m)}
                for name, m in self.frozen_parts().items()
            }
        return self._frozen_manifest

    def _frozen_keys(self) -> set[str]:
        return {f"model.{name}.{k}" for name, m in self.frozen_parts().items() for k in m.state_dict()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.weights_finite():  # raised before anything is written: the previous file stays
            raise NonFiniteLoss(
                f"trainable weights are NaN/inf at step {self.global_step}: this checkpoint is not written and the "
                "last good one is kept. Lower the learning rate or clip gradients, then resume=<run dir>"
            )
        frozen = self._frozen_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}
        checkpoint[FROZEN_MANIFEST] = self.frozen_manifest()
        checkpoint[TRAINING_STATE] = {
            "rng": rng_states(),
            "train_losses": list(self.train_losses),
            "counters": dict(self.counters),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(FROZEN_MANIFEST)
        if saved is not None:
            self._check_frozen(saved)
        own = self.state_dict()
        for key in self._frozen_keys():  # rebuilt from their source, not stored
            checkpoint["state_dict"].setdefault(key, own[key])
        state = checkpoint.get(TRAINING_STATE)
        if state is not None:
            self.train_losses = list(state["train_losses"])
            self.counters.update(state["counters"])
            self._rng_to_restore = state["rng"]

    def _check_frozen(self, saved: Mapping[str, Any]) -> None:
        """Refuse to continue on frozen parts other than those the checkpoint was trained on."""
        current = self.frozen_manifest()

        def entry(value: Any) -> dict[str, str]:  # checkpoints of before the sources: a bare hash
            return value if isinstance(value, Mapping) else {"source": "?", "sha256": str(value)}

        differ = []
        for name in sorted(set(saved) | set(current)):
            if name not in current:
                differ.append(f"{name} (frozen in the checkpoint, trainable or absent now)")
            elif name not in saved:
                differ.append(f"{name} (frozen now, not in the checkpoint's frozen parts)")
            elif entry(saved[name])["sha256"] != current[name]["sha256"]:
                old, new = entry(saved[name]), current[name]
                differ.append(f"{name} (checkpoint: {old['source']}, weights {old['sha256']}; "
                              f"now: {new['source']}, weights {new['sha256']})")  # fmt: skip
        if differ:
            raise ValueError(
                "cannot resume: these frozen parts are not the ones the checkpoint was trained on: "
                + "; ".join(differ)
                + ". Restore those parts (the same source, unchanged), or start a new run (resume=false)."
            )

    def on_train_start(self) -> None:
        """RNG states of the checkpoint, restored once the data stream is set up (as they were when saved)."""
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
