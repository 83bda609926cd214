"""Reading checkpoints: safetensors lazily, sharded indexes, pickles only as plain tensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mmzoo.convert.checkpoint import ConversionError, read_file, read_pretrained


class NotATensor:
    """Any class: unpickling it would run code that ``weights_only`` refuses to run."""


def test_pickle_that_needs_code_is_refused(tmp_path: Path) -> None:
    torch.save({"weight": torch.ones(2), "hook": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(ConversionError, match=r"weights_only=True"):
        read_file(tmp_path / "evil.pt")


def test_training_checkpoint_is_unwrapped(tmp_path: Path) -> None:
    """LAVIS/open_clip training checkpoints nest the weights beside optimiser state; DDP adds ``module.``."""
    torch.save({"model": {"module.w": torch.ones(2)}, "epoch": 3}, tmp_path / "ckpt.pth")
    weights = read_file(tmp_path / "ckpt.pth")
    assert list(weights) == ["w"] and torch.equal(weights["w"], torch.ones(2))


def test_sharded_safetensors_are_read_by_their_index(tmp_path: Path) -> None:
    save_file({"a": torch.zeros(2, 3)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.ones(4)}, str(tmp_path / "model-00002-of-00002.safetensors"))
    index = {
        "metadata": {},
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"},
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    weights = read_pretrained(str(tmp_path))
    assert sorted(weights) == ["a", "b"]
    assert weights.shape("a") == (2, 3) and torch.equal(weights["b"], torch.ones(4))


def test_directory_without_weights_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="no weights found"):
        read_pretrained(str(tmp_path))
