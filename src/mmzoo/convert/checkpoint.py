"""Reading a checkpoint's tensors by name, lazily, without running anyone's code.

A transformers checkpoint (local directory or hub id: the same code path, the hub only
needs network) is found through ``cached_file``: ``model.safetensors``, its sharded
index, or the ``pytorch_model.bin`` equivalents. A single file (open_clip weights,
MiniGPT-4's ``llama_proj`` checkpoint, LLaVA's ``mm_projector.bin``) is read directly.
Safetensors are opened lazily (a 7B checkpoint is never held twice in memory); pickles
go only through ``torch.load(weights_only=True)``, which refuses anything but tensors
and plain containers.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME
from transformers.utils.hub import cached_file


class ConversionError(ValueError):
    """A checkpoint that does not fit the zoo model: the message lists what did not match."""


def listing(items: list[str], limit: int = 20) -> str:
    """``items`` one per line, cut after ``limit`` with a count of the rest."""
    shown = "\n  ".join(items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {shown}{more}"


class Checkpoint(Mapping[str, torch.Tensor]):
    """Tensors by name: safetensors files opened on access, or an in-memory state dict.

    ``shape(key)`` reads only the header of a safetensors file, so a mapping can be
    checked against the zoo model before any tensor is loaded.
    """

    def __init__(
        self,
        source: str,
        files: Mapping[str, Path] | None = None,
        tensors: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        self.source = source
        self._files = dict(files or {})  # key -> safetensors file holding it
        self._tensors = dict(tensors or {})

    def __getitem__(self, key: str) -> torch.Tensor:
        if key in self._tensors:
            return self._tensors[key]
        with safe_open(str(self._files[key]), framework="pt") as f:
            return f.get_tensor(key)

    def shape(self, key: str) -> tuple[int, ...]:
        if key in self._tensors:
            return tuple(self._tensors[key].shape)
        with safe_open(str(self._files[key]), framework="pt") as f:
            return tuple(f.get_slice(key).get_shape())

    def __iter__(self) -> Iterator[str]:
        yield from self._files
        yield from self._tensors

    def __len__(self) -> int:
        return len(self._files) + len(self._tensors)

    def with_tensors(self, tensors: Mapping[str, torch.Tensor]) -> Checkpoint:
        """This checkpoint with ``tensors`` added (or replacing same-named ones)."""
        files = {k: v for k, v in self._files.items() if k not in tensors}
        return Checkpoint(self.source, files, {**self._tensors, **tensors})


def _safetensors(paths: list[Path], source: str) -> Checkpoint:
    files: dict[str, Path] = {}
    for path in paths:
        with safe_open(str(path), framework="pt") as f:
            files.update(dict.fromkeys(f.keys(), path))
    return Checkpoint(source, files)


def load_pickle(path: str | Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        raise ConversionError(
            f"{path}: this pickle needs more than tensors and plain containers to load, and mmzoo only loads "
            f"pickles with torch.load(weights_only=True). Save its state dict (tensors only) or safetensors "
            f"instead.\n  torch said: {str(err).splitlines()[0]}"
        ) from None
    except RuntimeError as err:  # e.g. a TorchScript archive rather than a pickle
        raise ConversionError(f"{path}: not a torch.save'd state dict ({str(err).splitlines()[0]})") from None


def state_dict_of(
    obj: Any, source: str, nested: tuple[str, ...] = ("state_dict", "model")
) -> dict[str, torch.Tensor]:
    """The tensors of a loaded pickle: the dict itself, or its ``state_dict`` / ``model`` entry
    (LAVIS and open_clip training checkpoints nest the weights there beside optimiser state)."""
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
    for key in nested:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConversionError(f"{source}: no tensors in it (keys: {sorted(map(str, obj))[:10]})")
    if all(k.startswith("module.") for k in tensors):  # saved from a DDP-wrapped model
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def read_file(path: str | Path) -> Checkpoint:
    """One weights file: ``.safetensors`` lazily, anything else as a tensors-only pickle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if path.suffix == ".safetensors":
        return _safetensors([path], str(path))
    return Checkpoint(str(path), tensors=state_dict_of(load_pickle(path), str(path)))


def _resolve(name_or_path: str, filename: str, **hub: Any) -> Path | None:
    found = cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False, **hub)
    return Path(found) if found else None


def read_pretrained(name_or_path: str, **hub: Any) -> Checkpoint:
    """The weights of a transformers checkpoint (directory or hub id), sharded or not.

    ``hub`` goes to ``cached_file`` (``revision``, ``token``, ``cache_dir``...).
    """
    for single, index in ((SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME), (WEIGHTS_NAME, WEIGHTS_INDEX_NAME)):
        path = _resolve(name_or_path, single, **hub)
        if path is not None:
            return read_file(path) if single == WEIGHTS_NAME else _safetensors([path], name_or_path)
        index_path = _resolve(name_or_path, index, **hub)
        if index_path is not None:
            shards = sorted(set(json.loads(index_path.read_text())["weight_map"].values()))
            paths = [_resolve(name_or_path, shard, **hub) for shard in shards]
            missing = [s for s, p in zip(shards, paths, strict=True) if p is None]
            if missing:
                raise ConversionError(f"{name_or_path}: shards named in {index} are missing: {missing}")
            if single == SAFE_WEIGHTS_NAME:
                return _safetensors(paths, name_or_path)
            tensors: dict[str, torch.Tensor] = {}
            for p in paths:
                tensors.update(state_dict_of(load_pickle(p), str(p)))
            return Checkpoint(name_or_path, tensors=tensors)
    raise ConversionError(
        f"{name_or_path}: no weights found ({SAFE_WEIGHTS_NAME}, {SAFE_WEIGHTS_INDEX_NAME}, {WEIGHTS_NAME} "
        f"or {WEIGHTS_INDEX_NAME})"
    )


class Combined(Checkpoint):
    """Several checkpoints as one, each under its own prefix (``<prefix>.<its key>``), each
    limited to the keys given: a model assembled from separately released parts
    (MiniGPT-4: BLIP-2's vision side and Q-Former, an LLM, a projector file)."""

    def __init__(self, source: str, parts: Mapping[str, tuple[Checkpoint, list[str]]]) -> None:
        super().__init__(source)
        self._parts = {prefix: (weights, list(keys)) for prefix, (weights, keys) in parts.items()}

    def _find(self, key: str) -> tuple[Checkpoint, str]:
        prefix, _, rest = key.partition(".")
        return self._parts[prefix][0], rest

    def __getitem__(self, key: str) -> torch.Tensor:
        weights, rest = self._find(key)
        return weights[rest]

    def shape(self, key: str) -> tuple[int, ...]:
        weights, rest = self._find(key)
        return weights.shape(rest)

    def __iter__(self) -> Iterator[str]:
        for prefix, (_, keys) in self._parts.items():
            yield from (f"{prefix}.{k}" for k in keys)

    def __len__(self) -> int:
        return sum(len(keys) for _, keys in self._parts.values())

    def with_tensors(self, tensors: Mapping[str, torch.Tensor]) -> Checkpoint:
        raise NotImplementedError("add tensors to a part (Checkpoint.with_tensors) before combining the parts")
