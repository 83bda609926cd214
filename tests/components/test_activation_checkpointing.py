"""Activation checkpointing switches: the same gradients, fewer activations kept for backward."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from mmzoo.components.encoders import OpenClipVisionEncoder, TimmVisionEncoder, TransformersVisionEncoder
from mmzoo.components.llm import LanguageModel
from mmzoo.data.tokenizer import shapes_tokenizer
from mmzoo.lit.base import kept_for_backward

TINY_VIT = dict(model_type="clip_vision_model", hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                num_attention_heads=2, image_size=32, patch_size=8)  # fmt: skip
TINY_TIMM = dict(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=2)
TINY_OPEN_CLIP = dict(image_size=32, patch_size=8, width=64, layers=3, head_width=32)
TINY_LLAMA = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
                  num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip

ENCODERS: dict[str, Callable[[bool], nn.Module]] = {
    "transformers": lambda on: TransformersVisionEncoder(config=TINY_VIT, gradient_checkpointing=on),
    "timm": lambda on: TimmVisionEncoder("vit_tiny_patch16_224", gradient_checkpointing=on, **TINY_TIMM),
    "open_clip": lambda on: OpenClipVisionEncoder(vision_cfg=TINY_OPEN_CLIP, embed_dim=64, gradient_checkpointing=on),
}


def saved_bytes_and_grads(module: nn.Module, run: Callable[[], torch.Tensor]) -> tuple[int, dict[str, torch.Tensor]]:
    """Bytes of the activations autograd keeps for backward (outside checkpointed regions),
    and the parameters' gradients after ``run().sum().backward()``."""
    module.train()
    module.zero_grad()
    with kept_for_backward(module) as kept:
        out = run()
    out.float().pow(2).mean().backward()
    return sum(kept.values()), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", sorted(ENCODERS))
def test_encoder_checkpointing_keeps_fewer_activations_for_the_same_gradients(family: str) -> None:
    torch.manual_seed(0)
    plain, checkpointed = ENCODERS[family](False), ENCODERS[family](True)
    checkpointed.load_state_dict(plain.state_dict())
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    kept_plain, grads_plain = saved_bytes_and_grads(plain, lambda: plain(images))
    kept_ckpt, grads_ckpt = saved_bytes_and_grads(checkpointed, lambda: checkpointed(images))
    assert grads_plain.keys() == grads_ckpt.keys() and grads_plain
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert kept_ckpt < 0.5 * kept_plain


def test_llm_checkpointing_keeps_fewer_activations_for_the_same_gradients() -> None:
    tokenizer = shapes_tokenizer(add_eos=False)
    torch.manual_seed(0)
    plain = LanguageModel(config=TINY_LLAMA, tokenizer=tokenizer)
    checkpointed = LanguageModel(config=TINY_LLAMA, tokenizer=tokenizer, gradient_checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    ids = torch.randint(5, len(tokenizer), (4, 24), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)

    def run(lm: LanguageModel) -> torch.Tensor:
        return lm(lm.embed(ids), mask, labels=ids).loss

    kept_plain, grads_plain = saved_bytes_and_grads(plain, lambda: run(plain))
    kept_ckpt, grads_ckpt = saved_bytes_and_grads(checkpointed, lambda: run(checkpointed))
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert kept_ckpt < 0.7 * kept_plain


def test_encoder_attention_implementation_is_a_switch() -> None:
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    sdpa = TransformersVisionEncoder(config=TINY_VIT).eval()
    eager = TransformersVisionEncoder(config=TINY_VIT, attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.model.config._attn_implementation == "sdpa"  # transformers' default: scaled-dot-product attention
    assert eager.model.config._attn_implementation == "eager"
    with torch.no_grad():
        torch.testing.assert_close(eager(images), sdpa(images), rtol=1e-4, atol=1e-5)
