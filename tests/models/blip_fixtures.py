"""Tiny BLIP-family parts shared by the model tests (random weights, CPU, 32 px)."""

from __future__ import annotations

import functools
import math

import torch

from mmzoo.components.bridges import Bridge
from mmzoo.components.encoders import TimmVisionEncoder
from mmzoo.components.text.blip_text import BlipText
from mmzoo.data.tokenizer import shapes_tokenizer

CAPTIONS = ["a red circle", "a blue square on the left", "a green triangle above a square", "two yellow circles"]
QFORMER = dict(num_queries=4, num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64, dropout=0.0)


def tiny_encoder() -> TimmVisionEncoder:
    return TimmVisionEncoder("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)


def tiny_blip_text():
    config = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    return functools.partial(BlipText, config=config, tokenizer=shapes_tokenizer(), max_length=16)


def tiny_qformer_bridge(text_side: bool = True, qformer_layers: int = 1, **kwargs):
    qformer = dict(QFORMER, num_layers=qformer_layers, max_text_length=16)
    if text_side:
        qformer["tokenizer"] = shapes_tokenizer()
    return functools.partial(Bridge, qformer=qformer, **kwargs)


def caption_batch(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    enc = shapes_tokenizer()(CAPTIONS[:n], padding=True, return_tensors="pt")
    pixels = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return pixels, enc["input_ids"], enc["attention_mask"]


def train_steps(model: torch.nn.Module, batch, steps: int, lr: float = 5e-3) -> list:
    """Run ``steps`` AdamW steps on one fixed batch (seeded negative sampling); return every output."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    outputs, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend on a shared CPU
    try:
        for _ in range(steps):
            out = model(*batch, generator=torch.Generator().manual_seed(0))
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            outputs.append(out)
    finally:
        torch.set_num_threads(threads)
    return outputs


def assert_each_loss_fell(outputs: list, names: tuple[str, ...]) -> None:
    """Each loss ends below 80% of its start; ITM also below chance (ln 2) for a 2-way guess."""
    first, last = outputs[0], outputs[-1]
    for name in names:
        start, end = float(getattr(first, name)), float(getattr(last, name))
        assert end < 0.8 * start, f"{name}: {start:.3f} -> {end:.3f}"
        if name == "loss_itm":
            assert end < math.log(2), f"{name}: {end:.3f} is no better than chance"
