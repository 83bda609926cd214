"""Run directories: what a run writes, and how another run reuses its parts.

A run directory holds ``config.yaml`` (resolved), ``model.safetensors`` (the model's
state dict, parts under their names: ``encoder.*``, ``text.*``, ``bridge.*``, ``llm.*``),
``metrics.json``, ``checkpoints/`` (Lightning, for resuming) and ``examples.jsonl``.
Because parts keep their names, ``encoder.from_run=<dir>`` can rebuild exactly the
encoder of that run (architecture from its config, weights from its safetensors), and
``model.pretrained_parts`` can load one sub-module (``bridge.qformer``) from another run.
References to the zoo's own runs (``zoo:<recipe>``) are made into paths by
``mmzoo.zoo.resolve_config`` before anything here is called.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file, save_model
from torch import nn

log = logging.getLogger(__name__)

PARTS = ("encoder", "text", "bridge", "llm")
# keys that change how a part runs but not the shapes of its weights: they may be set beside
# ``from_run`` (LLaVA takes a CLIP run's encoder at layer -2, patch tokens only)
RUNTIME_KEYS = ("layer", "tokens", "norm", "max_length", "frozen", "torch_dtype", "gradient_checkpointing",
                "attn_implementation")
CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE = "config.yaml", "model.safetensors", "metrics.json"
# module paths whose tokenizer a run saves (the Q-Former's own text side: BLIP-2, InstructBLIP)
TOKENIZED_PARTS = ("text", "llm", "bridge.qformer")


RUN_DIR_TOKEN = "@run"  # paths inside a run are saved relative to it, so runs can move


def _resolve_run_paths(value: Any, run_dir: Path) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_run_paths(v, run_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_run_paths(v, run_dir) for v in value]
    if isinstance(value, str) and value.startswith(RUN_DIR_TOKEN + "/"):
        return str(run_dir.resolve() / value[len(RUN_DIR_TOKEN) + 1 :])
    return value


def is_run_dir(path: str | Path) -> bool:
    """A zoo run directory (its config and weights), as opposed to a real checkpoint."""
    return (Path(path) / CONFIG_FILE).is_file() and (Path(path) / WEIGHTS_FILE).is_file()


def read_config(run_dir: str | Path) -> DictConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: no {CONFIG_FILE} in it")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return OmegaConf.create(_resolve_run_paths(data, Path(run_dir)))


def read_weights(run_dir: str | Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The run's saved weights (safetensors, no pickle), keys under ``prefix`` with it stripped."""
    path = Path(run_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {WEIGHTS_FILE}: did that run finish training?")
    state = load_file(path)
    if not prefix:
        return state
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def save_weights(model: nn.Module | Mapping[str, torch.Tensor], run_dir: str | Path) -> Path:
    """The model's weights as safetensors (no pickle). A state dict is accepted too (FSDP
    gathers one across ranks); tensors sharing storage are stored once, as ``save_model`` does."""
    path = Path(run_dir) / WEIGHTS_FILE
    if isinstance(model, nn.Module):
        save_model(model, str(path))
        return path
    seen: set[tuple[int, int]] = set()
    state = {}
    for name in sorted(model):
        tensor = model[name].detach().cpu()
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if tensor.numel() and ident in seen:
            continue
        seen.add(ident)
        state[name] = tensor.contiguous()
    save_file(state, str(path))
    return path


def tied_names(module: nn.Module) -> dict[str, set[str]]:
    """State-dict names that share storage with another name (tied embeddings, shared layers)."""
    by_storage: dict[tuple[int, int], set[str]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        if tensor.numel():
            by_storage.setdefault((tensor.untyped_storage().data_ptr(), tensor.storage_offset()), set()).add(name)
    return {name: names - {name} for names in by_storage.values() if len(names) > 1 for name in names}


def load_weights(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, strict: bool = True) -> None:
    """``load_state_dict`` that says what did not match instead of failing deep inside.

    Tied parameters (GPT-2/OPT/T5 input and output embeddings, BLIP's shared text layers)
    are saved once by safetensors; a name missing from ``state`` is fine when a name it
    shares storage with was loaded.
    """
    own = module.state_dict()
    state = {  # runs saved before scalars became (1,)-shaped (FSDP) still load
        k: v.reshape(own[k].shape) if k in own and v.shape != own[k].shape and v.numel() == own[k].numel() == 1 else v
        for k, v in state.items()
    }
    try:
        missing, unexpected = module.load_state_dict(dict(state), strict=False)
    except RuntimeError as err:  # shape mismatches: say which run and why it may happen
        raise ValueError(
            f"{what}: weights do not fit the part as configured (a different size, or a tokenizer "
            f"with another vocabulary?):\n{err}"
        ) from None
    tied = tied_names(module)
    missing = [k for k in missing if not (tied.get(k, set()) & set(state))]
    if strict and (missing or unexpected):
        raise ValueError(
            f"{what}: weights do not fit the part (missing {missing[:5]}..., unexpected {unexpected[:5]}...)"
        )
    if missing or unexpected:
        log.warning("%s: %d missing and %d unexpected keys", what, len(missing), len(unexpected))


def _build_and_load(node: DictConfig, run_dir: str, part: str, *args: Any, **kwargs: Any) -> nn.Module:
    module = instantiate(node, _convert_="all")(*args, **kwargs)
    load_weights(module, read_weights(run_dir, f"{part}."), f"{part} from {run_dir}")
    return module


def load_part(run_dir: str, part: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """Rebuild ``part`` of a finished run with its trained weights (``overrides``: RUNTIME_KEYS).

    For a partial part (a bridge, whose dimensions are injected at build time) this returns
    a factory that builds and then loads.
    """
    node = with_runtime_keys(part_config(run_dir, part), overrides or {})
    if node.get("_partial_", False):
        return functools.partial(_build_and_load, node, run_dir, part)
    module = instantiate(node, _convert_="all")
    load_weights(module, read_weights(run_dir, f"{part}."), f"{part} from {run_dir}")
    log.info("%s loaded from run %s", part, run_dir)
    return module


def part_config(run_dir: str | Path, part: str) -> DictConfig:
    """The architecture of ``part`` in a run (run configs are saved self-contained)."""
    node = read_config(run_dir).get(part)
    if node is None:
        raise ValueError(f"run {run_dir} has no part {part!r}")
    return node


def with_runtime_keys(node: DictConfig, overrides: Mapping[str, Any]) -> DictConfig:
    node = node.copy()
    for key in RUNTIME_KEYS:
        if key in overrides:
            node[key] = overrides[key]
    return node


def resolve_parts(cfg: DictConfig) -> tuple[DictConfig, DictConfig]:
    """Resolve ``<part>.from_run=<dir>`` for building and for saving (zoo references made first).

    Returns ``(build_cfg, saved_cfg)``: in the first, such a part is a loader node (its
    weights come from that run); in the second, it is that run's architecture, so the new
    run directory is self-contained, with the lineage recorded under ``lineage``.
    """
    build, saved = cfg.copy(), cfg.copy()
    for c in (build, saved):
        OmegaConf.set_struct(c, False)
    lineage = {}
    for part in PARTS:
        node = cfg.get(part)
        if not isinstance(node, DictConfig):
            continue
        from_run = node.get("from_run")
        if from_run:
            from_run = str(from_run)
            if from_run.startswith("zoo:"):
                raise ValueError(f"{part}.from_run={from_run}: zoo references are resolved by mmzoo.zoo first")
            runtime = {k: node[k] for k in RUNTIME_KEYS if k in node}
            build[part] = {"_target_": "mmzoo.rundir.load_part", "run_dir": from_run, "part": part, "overrides": runtime}
            saved[part] = with_runtime_keys(part_config(from_run, part), runtime)
            lineage[part] = from_run
        else:
            for c in (build, saved):
                c[part].pop("from_run", None)
    saved["lineage"] = lineage
    return build, saved


def flatten_paths(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{bridge: {qformer: X}}`` or ``{"bridge.qformer": X}`` -> ``{"bridge.qformer": X}``."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten_paths(value, path + ".")
        elif value:
            flat[path] = str(value)
    return flat


def load_pretrained_parts(model: nn.Module, sources: Mapping[str, Any]) -> dict[str, str]:
    """Load sub-modules of ``model`` from finished runs, by module path: ``{bridge: {qformer: run}}``
    takes that run's ``bridge.qformer.*`` weights (e.g. MiniGPT-4's frozen Q-Former from a
    BLIP-2 stage-1 run). Returns ``{path: run directory}``, the lineage to record."""
    done = {}
    for path, run_dir in flatten_paths(sources).items():
        if run_dir.startswith("zoo:"):
            from mmzoo.zoo import resolve

            run_dir = resolve(run_dir)  # building a model never trains another one
        try:
            target = model.get_submodule(path)
        except AttributeError:
            raise ValueError(f"pretrained_parts: this model has no sub-module {path!r}") from None
        state = read_weights(run_dir, f"{path}.")
        if not state:
            kind = " (a Q-Former comes from a BLIP-2 stage-1 run: experiment=blip2_stage1)" if "qformer" in path else ""
            raise ValueError(f"pretrained_parts: run {run_dir} has no weights under {path!r}{kind}")
        load_weights(target, state, f"{path} from {run_dir}")
        log.info("%s initialised from run %s", path, run_dir)
        done[path] = run_dir
    return done


def load_run(run_dir: str | Path) -> Any:
    """The trained model of a run directory (its saved config, its safetensors weights), in eval mode."""
    module = instantiate(read_config(run_dir).model, _convert_="all")
    load_weights(module.model, read_weights(run_dir), f"model from {run_dir}")
    return module.eval()


def save_tokenizers(model: nn.Module, saved_cfg: DictConfig, run_dir: str | Path) -> None:
    """Save each part's tokenizer in the run and point the saved config at it.

    Token ids are part of a model's weights: a run rebuilt later (``from_run``,
    ``from_pretrained``) must tokenise exactly as it was trained, even if the code that
    built an in-memory tokenizer has changed since. A part appears twice in a run config
    (as its group, e.g. ``llm``, and inside ``model``): both nodes point at one saved copy.
    """
    for part in TOKENIZED_PARTS:
        try:
            tokenizer = getattr(model.get_submodule(part), "tokenizer", None)
        except AttributeError:
            continue
        nodes = [OmegaConf.select(c, part) if c is not None else None for c in (saved_cfg, saved_cfg.get("model"))]
        nodes = [n for n in nodes if isinstance(n, DictConfig) and n.get("tokenizer") is not None]
        if tokenizer is None or not nodes:
            continue
        tokenizer.save_pretrained(str(Path(run_dir) / "tokenizers" / part))
        for node in nodes:
            node["tokenizer"] = {
                "_target_": "transformers.AutoTokenizer.from_pretrained",
                "pretrained_model_name_or_path": f"{RUN_DIR_TOKEN}/tokenizers/{part}",
            }


def write_metrics(run_dir: str | Path, metrics: Mapping[str, Any]) -> Path:
    path = Path(run_dir) / METRICS_FILE
    path.write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n")
    return path


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())
