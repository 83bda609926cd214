"""BLIP-2's three Q-Former masks and BLIP's causal decoder mask, token by token."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmzoo.components.attention_masks import (
    additive_mask,
    bidirectional_mask,
    causal_mask,
    multimodal_causal_mask,
    unimodal_mask,
)

# two rows: the first has one pad at the end, the second two; Q = 2 queries, T = 4 tokens
TEXT_MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])


def test_unimodal_mask_separates_queries_and_text() -> None:
    expected_row0 = torch.tensor(
        [  # keys: q0 q1 t0 t1 t2 t3(pad)
            [1, 1, 0, 0, 0, 0],  # q0
            [1, 1, 0, 0, 0, 0],  # q1
            [0, 0, 1, 1, 1, 0],  # t0
            [0, 0, 1, 1, 1, 0],  # t1
            [0, 0, 1, 1, 1, 0],  # t2
            [0, 0, 1, 1, 1, 0],  # t3 (pad row: sees real text only)
        ]
    )
    expected_row1 = expected_row0.clone()
    expected_row1[:, 4] = 0  # t2 is padding in the second row
    mask = unimodal_mask(2, TEXT_MASK)
    assert mask.dtype == torch.bool and mask.shape == (2, 6, 6)
    assert torch.equal(mask[0], expected_row0.bool())
    assert torch.equal(mask[1], expected_row1.bool())


def test_bidirectional_mask_sees_every_real_token() -> None:
    mask = bidirectional_mask(2, TEXT_MASK)
    assert torch.equal(mask[0], torch.tensor([[1, 1, 1, 1, 1, 0]] * 6).bool())
    assert torch.equal(mask[1], torch.tensor([[1, 1, 1, 1, 0, 0]] * 6).bool())


def test_multimodal_causal_mask_queries_blind_to_text_text_causal() -> None:
    expected_row0 = torch.tensor(
        [  # keys: q0 q1 t0 t1 t2 t3(pad)
            [1, 1, 0, 0, 0, 0],  # q0: queries only
            [1, 1, 0, 0, 0, 0],  # q1
            [1, 1, 1, 0, 0, 0],  # t0: all queries + itself
            [1, 1, 1, 1, 0, 0],  # t1: + earlier text
            [1, 1, 1, 1, 1, 0],  # t2
            [1, 1, 1, 1, 1, 0],  # t3 (pad): never a pad key
        ]
    )
    expected_row1 = expected_row0.clone()
    expected_row1[:, 4] = 0
    mask = multimodal_causal_mask(2, TEXT_MASK)
    assert torch.equal(mask[0], expected_row0.bool())
    assert torch.equal(mask[1], expected_row1.bool())


def test_causal_mask_is_lower_triangular_over_real_tokens() -> None:
    mask = causal_mask(torch.tensor([[1, 1, 0]]))
    assert torch.equal(mask[0], torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 0]]).bool())


@settings(max_examples=40, deadline=None)
@given(
    num_queries=st.integers(0, 4),
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    extra=st.integers(0, 2),
)
def test_masks_match_their_definitions_elementwise(num_queries: int, lengths: list[int], extra: int) -> None:
    t = max(lengths) + extra
    text_mask = torch.tensor([[1] * n + [0] * (t - n) for n in lengths])
    q = num_queries
    masks = {
        "uni": unimodal_mask(q, text_mask),
        "bi": bidirectional_mask(q, text_mask),
        "causal": multimodal_causal_mask(q, text_mask),
    }
    for b in range(len(lengths)):
        for i in range(q + t):
            for j in range(q + t):
                real_key = j < q or bool(text_mask[b, j - q])
                i_query, j_query = i < q, j < q
                assert bool(masks["uni"][b, i, j]) == (real_key and i_query == j_query)
                assert bool(masks["bi"][b, i, j]) == real_key
                causal = (i_query and j_query) or (not i_query and (j_query or j <= i))
                assert bool(masks["causal"][b, i, j]) == (real_key and causal)


def test_additive_mask_is_four_dimensional_bias() -> None:
    allowed = multimodal_causal_mask(1, torch.tensor([[1, 0]]))
    bias = additive_mask(allowed, torch.float32)
    assert bias.shape == (1, 1, 3, 3) and bias.dtype == torch.float32
    assert torch.equal(bias[0, 0] == 0, allowed[0])
    assert bool((bias[0, 0][~allowed[0]] == torch.finfo(torch.float32).min).all())
    with pytest.raises(ValueError, match="boolean"):
        additive_mask(allowed.float())
