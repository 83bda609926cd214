"""Gathering features across ranks with gradients, for contrastive losses.

With ``torch.distributed`` uninitialised (one process) these are no-ops, so the same
loss code runs on a laptop and under Lightning's DDP/FSDP strategies.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world_size), (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from every rank into (world * B, ...); gradients flow back."""
    _, world_size = world()
    if world_size == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def gather_objects(items: list) -> list:
    """Concatenate a per-rank list (embeddings, strings, records) across ranks, for evaluation.

    Test shards give ranks unequal sample counts, which tensor all-gather cannot take; the
    evaluation sets are small, so pickling them through ``all_gather_object`` is fine.
    """
    _, world_size = world()
    if world_size == 1:
        return items
    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, items)
    return [x for part in gathered for x in part]


def gather_tensor(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from every rank into (world * B, ...), without gradients.

    For what carries no gradient but must line up with gathered features: token ids and
    masks of the texts an ITM negative may be drawn from, group ids of the candidates.
    """
    _, world_size = world()
    if world_size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def candidates(local: int, total: int) -> tuple[int, int]:
    """(offset, world) of a rank's ``local`` rows among ``total`` gathered candidates.

    ``total == local`` means nothing was gathered (one process, or ``gather=False``);
    otherwise the candidates are every rank's rows in rank order and this rank's own rows
    start at ``rank * local``.
    """
    if total == local:
        return 0, 1
    rank, world_size = world()
    if total != world_size * local:
        raise ValueError(
            f"{total} candidates for {local} local rows: expected {local} (not gathered) or "
            f"world_size x {local} = {world_size * local} (gathered from every rank, equal batch sizes)"
        )
    return rank * local, world_size


def gather_padded(x: torch.Tensor, length: int, value: int) -> torch.Tensor:
    """``gather_tensor`` for right-padded (B, L) ids/masks whose L differs between ranks:
    each rank pads to ``length`` first (only when there is more than one rank)."""
    _, world_size = world()
    if world_size == 1:
        return x
    if x.shape[1] > length:
        raise ValueError(f"sequences of {x.shape[1]} tokens, longer than the {length} they are padded to")
    padded = torch.nn.functional.pad(x, (0, length - x.shape[1]), value=value)
    return gather_tensor(padded)
