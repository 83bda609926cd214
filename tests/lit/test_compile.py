"""``compile.enabled=true``: the parts are compiled in place, compute what the eager parts
compute, and checkpoints keep the eager keys (so compiled runs resume and load like others)."""

from __future__ import annotations

import pytest
import torch

from mmzoo.api import build
from tests.conftest import run_zoo
from tests.lit.tiny import TINY_PARTS, fake_batch

MODEL_INPUTS = ("pixel_values", "input_ids", "attention_mask", "labels")


def test_compiled_parts_give_the_eager_loss_and_gradients_under_the_same_keys():
    torch.manual_seed(0)
    module = build("llava", TINY_PARTS)
    batch = {k: v for k, v in fake_batch(module).items() if k in MODEL_INPUTS}
    keys = list(module.model.state_dict())

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        module.zero_grad()
        loss = module.model(**batch).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in module.model.parameters() if p.requires_grad]

    eager_loss, eager_grads = loss_and_grads()
    torch._dynamo.reset()
    assert module.compile_parts(backend="aot_eager") == ["encoder", "bridge", "llm"]
    assert all(part._compiled_call_impl is not None for part in module.model.children())
    compiled_loss, compiled_grads = loss_and_grads()
    assert torch.allclose(compiled_loss, eager_loss, rtol=1e-5)
    for compiled, eager in zip(compiled_grads, eager_grads, strict=True):
        assert torch.allclose(compiled, eager, rtol=1e-4, atol=1e-6)
    assert list(module.model.state_dict()) == keys  # no "_orig_mod." as torch.compile(module) would add


def test_an_unknown_part_is_a_clear_error():
    module = build("llava", TINY_PARTS)
    with pytest.raises(ValueError, match=r"cannot compile \['vision'\]: the model has parts \['bridge', 'encoder', 'llm'\]"):
        module.compile_parts(["vision"])


@pytest.mark.slow
def test_a_compiled_run_trains_and_loads_back_as_an_eager_model(tmp_path):
    from mmzoo import from_pretrained
    from mmzoo.rundir import read_metrics

    torch._dynamo.reset()
    overrides = ["model=clip", "trainer.max_steps=3", "compile.enabled=true", "+compile.options.backend=aot_eager"]
    run_zoo(tmp_path / "run", overrides)
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "ok" and metrics["train"]["steps"] == 3
    loaded = from_pretrained(tmp_path / "run")  # strict: every saved key must find its parameter
    assert all(part._compiled_call_impl is None for part in loaded.model.children())
