"""Self-attention masks of the BLIP family, one function each.

Each returns a boolean ``(B, L, L)`` tensor, ``mask[b, i, j] = True`` when position ``i``
may attend to position ``j``. For BLIP-2's Q-Former the sequence is ``[queries | text]``
(``L = Q + T``); ``text_mask`` is the text's padding mask (B, T), 1 = real token.
``additive_mask`` turns any of them into the ``(B, 1, L, L)`` float bias that transformers'
``Blip2QFormerModel`` and ``BlipTextModel`` take as-is (in transformers 5 their mask
helpers pass 4-D masks through untouched and rebuild 2-D ones; a 3-D mask is not accepted).

The three Q-Former masks are BLIP-2's (Li et al. 2023, fig. 2): they let one transformer
serve three objectives with the same weights.
"""

from __future__ import annotations

import torch


def _blocks(num_queries: int, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Key-side helpers: (is_query (L,), is_real_key (B, L), text position (L,); -1 for queries)."""
    b, t = text_mask.shape
    device = text_mask.device
    is_query = torch.arange(num_queries + t, device=device) < num_queries  # (L,)
    real = torch.cat([torch.ones(b, num_queries, dtype=torch.bool, device=device), text_mask.bool()], dim=1)
    position = torch.arange(num_queries + t, device=device) - num_queries  # (L,), < 0 on queries
    return is_query, real, position


def unimodal_mask(num_queries: int, text_mask: torch.Tensor) -> torch.Tensor:
    """ITC: queries see only queries, text sees only (real) text; no information crosses.

    ``(B, Q + T, Q + T)``. Running queries and text jointly under this mask computes what
    two separate passes (queries alone, text alone) compute.
    """
    is_query, real, _ = _blocks(num_queries, text_mask)
    same_modality = is_query[:, None] == is_query[None, :]  # (L, L)
    return same_modality[None] & real[:, None, :]  # (B, L, L)


def bidirectional_mask(num_queries: int, text_mask: torch.Tensor) -> torch.Tensor:
    """ITM (and InstructBLIP's instruction-aware queries): every position sees every real one."""
    _, real, _ = _blocks(num_queries, text_mask)
    length = real.shape[1]
    return real[:, None, :].expand(-1, length, -1).clone()  # (B, L, L)


def multimodal_causal_mask(num_queries: int, text_mask: torch.Tensor) -> torch.Tensor:
    """ITG: queries see only queries; text token i sees all queries and real text j <= i.

    The queries must gather everything the caption needs from the image (they cannot peek
    at the text), and the text is generated left to right.
    """
    is_query, real, position = _blocks(num_queries, text_mask)
    query_row = is_query[:, None] & is_query[None, :]  # (L, L) query -> query
    text_row = ~is_query[:, None] & (is_query[None, :] | (position[None, :] <= position[:, None]))  # (L, L)
    return (query_row | text_row)[None] & real[:, None, :]  # (B, L, L)


def causal_mask(text_mask: torch.Tensor) -> torch.Tensor:
    """BLIP's decoder: token i sees real tokens j <= i (``multimodal_causal_mask`` with no queries)."""
    return multimodal_causal_mask(0, text_mask)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Boolean ``(B, L, L)`` -> additive ``(B, 1, L, L)``: 0 where attended, dtype min elsewhere."""
    if mask.dim() != 3 or mask.dtype != torch.bool:
        raise ValueError(f"expected a boolean (B, L, L) mask, got {mask.dtype} {tuple(mask.shape)}")
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill(~mask, torch.finfo(dtype).min)[:, None]  # (B, 1, L, L)
