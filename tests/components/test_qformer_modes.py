"""The Q-Former's modes: queries only, queries + instruction, text only, and the masked pairs."""

from __future__ import annotations

import pytest
import torch

from mmzoo.components.bridges import QFormerResampler
from mmzoo.data.tokenizer import shapes_tokenizer

SIZE = dict(num_queries=4, num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64, dropout=0.0)
Q = SIZE["num_queries"]


@pytest.fixture(scope="module")
def qformer() -> QFormerResampler:
    torch.manual_seed(0)
    return QFormerResampler(24, tokenizer=shapes_tokenizer(), max_text_length=16, **SIZE).eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 9, 24, generator=g)  # (B, N, D)
    ids = torch.randint(5, 40, (2, 6), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    return image, ids.masked_fill(mask == 0, 0), mask


def test_tokenizer_sets_the_text_side(qformer: QFormerResampler) -> None:
    assert qformer.has_text and qformer.tokenizer is not None
    assert qformer.embeddings.word_embeddings.num_embeddings == len(qformer.tokenizer)
    with pytest.raises(ValueError, match="vocab_size=3"):
        QFormerResampler(24, vocab_size=3, tokenizer=shapes_tokenizer(), **SIZE)


def test_unimodal_pair_is_the_two_itc_passes(qformer: QFormerResampler, batch) -> None:
    image, ids, mask = batch
    with torch.no_grad():
        joint = qformer.encode_pair(image, ids, mask, "unimodal")  # (B, Q + T, H)
        queries, text = qformer(image), qformer.encode_text(ids, mask)
    torch.testing.assert_close(joint[:, :Q], queries)
    real = mask.bool()
    torch.testing.assert_close(joint[:, Q:][real], text[real])


def _perturb(ids: torch.Tensor, position: int) -> torch.Tensor:
    changed = ids.clone()
    changed[:, position] = (changed[:, position] + 7) % 40 + 5
    return changed


def test_multimodal_causal_pair_hides_later_text(qformer: QFormerResampler, batch) -> None:
    image, ids, mask = batch
    k = 2
    with torch.no_grad():
        before = qformer.encode_pair(image, ids, mask, "multimodal_causal")
        after = qformer.encode_pair(image, _perturb(ids, k), mask, "multimodal_causal")
    torch.testing.assert_close(after[:, : Q + k], before[:, : Q + k])  # queries and earlier text
    assert not torch.allclose(after[:, Q + k :][:, :2], before[:, Q + k :][:, :2])  # the token and later


def test_bidirectional_pair_lets_queries_read_the_text(qformer: QFormerResampler, batch) -> None:
    image, ids, mask = batch
    with torch.no_grad():
        before = qformer.encode_pair(image, ids, mask, "bidirectional")
        after = qformer.encode_pair(image, _perturb(ids, 3), mask, "bidirectional")
    assert not torch.allclose(after[:, :Q], before[:, :Q])
    assert not torch.allclose(after[:, Q], before[:, Q])  # earlier text sees later text too


@pytest.mark.parametrize("mode", ["unimodal", "bidirectional", "multimodal_causal"])
def test_padding_is_invisible_in_every_mode(qformer: QFormerResampler, batch, mode: str) -> None:
    image, ids, mask = batch
    other_pads = ids.masked_fill(mask == 0, 33)
    with torch.no_grad():
        a = qformer.encode_pair(image, ids, mask, mode)
        b = qformer.encode_pair(image, other_pads, mask, mode)
    real = torch.cat([torch.ones(2, Q, dtype=torch.bool), mask.bool()], dim=1)
    torch.testing.assert_close(a[real], b[real])


def test_text_only_uses_the_text_feed_forward_and_no_cross_attention(qformer: QFormerResampler, batch) -> None:
    _, ids, mask = batch
    qformer.zero_grad()
    qformer.encode_text(ids, mask).sum().backward()
    layer = qformer.qformer.encoder.layer[0]
    assert layer.intermediate.dense.weight.grad.abs().sum() > 0
    assert layer.intermediate_query.dense.weight.grad is None
    assert layer.crossattention.attention.key.weight.grad is None
    assert qformer.query_tokens.grad is None
    qformer.zero_grad()


def test_instruction_changes_queries_queries_only_takes_none(qformer: QFormerResampler, batch) -> None:
    image, ids, mask = batch
    with torch.no_grad():
        plain = qformer(image)
        instructed = qformer(image, instruction_ids=ids, instruction_mask=mask)
        other = qformer(image, instruction_ids=_perturb(ids, 1), instruction_mask=mask)
        pair = qformer.encode_pair(image, ids, mask, "bidirectional")
    assert instructed.shape == plain.shape == (2, Q, 32)
    assert not torch.allclose(instructed, plain) and not torch.allclose(other, instructed)
    torch.testing.assert_close(instructed, pair[:, :Q])
    queries_only = QFormerResampler(24, **SIZE)
    with pytest.raises(ValueError, match="without a text side.*tokenizer"):
        queries_only(image, instruction_ids=ids)
    with pytest.raises(ValueError, match="without a text side"):
        queries_only.encode_text(ids, mask)


def test_queries_only_qformer_loads_a_stage1_state_and_drops_its_text_side(qformer: QFormerResampler, batch) -> None:
    image, _, _ = batch
    state = qformer.state_dict()
    assert any(k.startswith("embeddings.") for k in state)
    assert "qformer.encoder.layer.0.intermediate.dense.weight" in state
    queries_only = QFormerResampler(24, **SIZE).eval()
    queries_only.load_state_dict(state)  # strict: nothing missing, the text side ignored
    for name, tensor in queries_only.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    with torch.no_grad():
        torch.testing.assert_close(queries_only(image), qformer(image), rtol=0, atol=0)
    # the other way round is an honest error: a text side cannot be invented
    with pytest.raises(RuntimeError, match="Missing key"):
        QFormerResampler(24, tokenizer=shapes_tokenizer(), max_text_length=16, **SIZE).load_state_dict(
            queries_only.state_dict()
        )
