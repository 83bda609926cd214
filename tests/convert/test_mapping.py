"""Key tables: strict filling (nothing dropped, nothing left random unless declared) and inversion."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from mmzoo.convert.checkpoint import ConversionError
from mmzoo.convert.mapping import Rule, fill, invert, map_tensors


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 2, bias=False)
        self.norm = nn.LayerNorm(3)
        self.copy = nn.LayerNorm(3)
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight  # tied, as LLMs tie their output head


RULES = (
    Rule(r"P", ("proj.weight",), "T"),  # an ``x @ P`` parameter (3, 2) -> Linear weight (2, 3)
    Rule(r"ln\.(weight|bias)", (r"norm.\1", r"copy.\1")),
    Rule(r"tok\.weight", ("embed.weight",)),
    Rule(r"positions", ()),
)


def _reference() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "P": torch.randn(3, 2),
        "ln.weight": torch.randn(3),
        "ln.bias": torch.randn(3),
        "tok.weight": torch.randn(5, 3),
        "positions": torch.arange(4),
    }


def test_fill_copies_transforms_and_fills_tied_and_copied_targets() -> None:
    model, ref = Tiny(), _reference()
    report = fill(model, ref, RULES, "test")
    assert torch.equal(model.proj.weight, ref["P"].T)
    assert torch.equal(model.norm.bias, ref["ln.bias"]) and torch.equal(model.copy.bias, ref["ln.bias"])
    assert torch.equal(model.head.weight, ref["tok.weight"])  # through the tie
    assert report.unfilled == []


def test_unclaimed_reference_tensor_is_an_error() -> None:
    with pytest.raises(ConversionError, match=r"(?s)1 checkpoint tensors have no place.*extra\.bias"):
        fill(Tiny(), {**_reference(), "extra.bias": torch.ones(1)}, RULES, "test")


def test_every_shape_mismatch_is_listed() -> None:
    ref = {**_reference(), "P": torch.randn(4, 2), "ln.bias": torch.randn(7)}
    with pytest.raises(
        ConversionError, match=r"(?s)P \[2, 4\] -> proj\.weight \[2, 3\].*ln\.bias \[7\] -> norm\.bias"
    ):
        fill(Tiny(), ref, RULES, "test")


def test_unfilled_zoo_weights_are_an_error_unless_declared(caplog: pytest.LogCaptureFixture) -> None:
    ref = {k: v for k, v in _reference().items() if not k.startswith("ln.")}
    with pytest.raises(ConversionError, match=r"(?s)no tensors for 4 zoo weights.*copy\.bias"):
        fill(Tiny(), ref, RULES, "test")
    with caplog.at_level(logging.WARNING):
        report = fill(Tiny(), ref, RULES, "test", allow_unfilled=[r"(norm|copy)\..*"])
    assert report.unfilled == ["copy.bias", "copy.weight", "norm.bias", "norm.weight"]
    assert "copy.bias" in caplog.text


def test_two_layouts_of_one_tensor_are_an_error() -> None:
    rules = (*RULES, Rule(r"old\.P", ("proj.weight",), "T"))
    with pytest.raises(ConversionError, match="both map to 'proj.weight'"):
        fill(Tiny(), {**_reference(), "old.P": torch.randn(3, 2)}, rules, "test")


def test_invert_then_map_is_the_identity() -> None:
    model = Tiny()
    fill(model, _reference(), RULES, "test")
    reference_keys = ["P", "ln.weight", "ln.bias", "tok.weight", "positions"]
    written = invert(model.state_dict(), reference_keys, RULES, "test")
    assert "positions" not in written  # rebuilt by the reference model, not written from the zoo
    back = map_tensors(written, RULES, "test")
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items() if k in back)
    assert set(back) == set(model.state_dict()) - {"head.weight"}  # the tie fills it on import
