"""Bridges: MLP depth, Q-Former resampling (with and without instructions), freezing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmzoo.components.bridges import Bridge, MLPProjector, QFormerResampler

QFORMER = dict(num_queries=8, num_layers=2, hidden_size=64, num_heads=2, intermediate_size=128)


@pytest.fixture
def image_tokens() -> torch.Tensor:
    return torch.randn(2, 17, 48, generator=torch.Generator().manual_seed(0))  # (B, N, D_in)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_mlp_depth_is_number_of_linears(image_tokens: torch.Tensor, depth: int) -> None:
    mlp = MLPProjector(48, 96, depth=depth)
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == depth
    assert all(layer.out_features == 96 for layer in linears)  # hidden width defaults to out_dim
    assert len([m for m in mlp.modules() if isinstance(m, nn.GELU)]) == depth - 1
    assert mlp(image_tokens).shape == (2, 17, 96)


def test_mlp_hidden_dim_bias_and_errors() -> None:
    mlp = MLPProjector(48, 96, depth=2, hidden_dim=32, bias=False, act="relu")
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [32, 96]
    assert all(m.bias is None for m in mlp.modules() if isinstance(m, nn.Linear))
    with pytest.raises(ValueError, match="valid: .*gelu"):
        MLPProjector(4, 4, act="swishy")
    with pytest.raises(ValueError, match="depth"):
        MLPProjector(4, 4, depth=0)


def test_qformer_resampler_shapes_and_masks(image_tokens: torch.Tensor) -> None:
    qformer = QFormerResampler(48, **QFORMER).eval()
    assert qformer.dim == 64
    out = qformer(image_tokens)
    assert out.shape == (2, 8, 64)
    mask = torch.ones(2, 17, dtype=torch.long)
    torch.testing.assert_close(qformer(image_tokens, image_mask=mask), out)


def test_qformer_instructions_change_queries_and_respect_mask(image_tokens: torch.Tensor) -> None:
    qformer = QFormerResampler(48, vocab_size=30, **QFORMER).eval()
    ids = torch.randint(4, 30, (2, 5), generator=torch.Generator().manual_seed(1))
    plain = qformer(image_tokens)
    instructed = qformer(image_tokens, instruction_ids=ids, instruction_mask=torch.ones_like(ids))
    assert instructed.shape == (2, 8, 64)
    assert not torch.allclose(plain, instructed)
    # masked-out instruction tokens are invisible to the queries
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones_like(ids), torch.zeros(2, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(qformer(image_tokens, instruction_ids=padded, instruction_mask=mask), instructed)


def test_qformer_without_vocab_rejects_instructions(image_tokens: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        QFormerResampler(48, **QFORMER)(image_tokens, instruction_ids=torch.ones(2, 3, dtype=torch.long))


def test_qformer_parameter_names_match_transformers_blip2() -> None:
    names = set(QFormerResampler(48, **QFORMER).state_dict())
    assert "query_tokens" in names
    assert "qformer.encoder.layer.0.crossattention.attention.key.weight" in names


@pytest.mark.parametrize("depth", [1, 3])
def test_bridge_without_qformer_preserves_tokens(image_tokens: torch.Tensor, depth: int) -> None:
    bridge = Bridge(48, 96, depth=depth)
    assert bridge.preserves_tokens and bridge.num_output_tokens(17) == 17
    assert bridge(image_tokens).shape == (2, 17, 96)
    assert bridge.frozen_modules() == []
    with pytest.raises(ValueError, match="Q-Former"):
        bridge(image_tokens, instruction_ids=torch.ones(2, 3, dtype=torch.long))


def test_bridge_with_qformer(image_tokens: torch.Tensor) -> None:
    bridge = Bridge(48, 96, depth=2, qformer=QFORMER)
    assert not bridge.preserves_tokens and bridge.num_output_tokens(17) == 8
    assert bridge(image_tokens).shape == (2, 8, 96)
    assert all(p.requires_grad for p in bridge.parameters())


def test_frozen_freezes_exactly_the_qformer(image_tokens: torch.Tensor) -> None:
    bridge = Bridge(48, 96, depth=3, qformer=QFORMER, frozen=True)
    frozen = {n for n, p in bridge.named_parameters() if not p.requires_grad}
    assert frozen == {f"qformer.{n}" for n, _ in bridge.qformer.named_parameters()}
    assert "qformer.query_tokens" in frozen
    assert all(p.requires_grad for p in bridge.projector.parameters())
    assert bridge.frozen_modules() == [bridge.qformer]
    bridge(image_tokens).sum().backward()
    assert bridge.projector.layers[0].weight.grad is not None


def test_frozen_without_qformer_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing to freeze"):
        Bridge(48, 96, frozen=True)
