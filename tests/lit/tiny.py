"""Tiny random LLaVA / MiniGPT-4 parts and a hand-made batch, for the wiring tests of several modules."""

from __future__ import annotations

import torch

TINY_PARTS = ["encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null"]  # random parts: wiring tests only


def fake_batch(module, n=2):
    c = module.collator()
    samples = [
        {"key": str(i), "image": torch.randn(3, 32, 32), "caption": "a red circle on the left.",
         "meta": {"qa": [{"question": "what colour is the circle?", "answer": "red"}], "description": "a red circle."}}
        for i in range(n)
    ]
    return c(samples)
