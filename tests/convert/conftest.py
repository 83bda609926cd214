"""Tiny randomly initialised reference checkpoints, saved as their libraries save them.

Each is what a real release looks like on disk, shrunk: ``save_pretrained`` of a
transformers model with its tokenizer beside it, or ``torch.save`` of an open_clip state
dict. Nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import CLIPConfig, CLIPModel, LlavaConfig, LlavaForConditionalGeneration

from mmzoo.data.conversation import expand_image_token
from mmzoo.data.tokenizer import build_word_tokenizer

WORDS = "a photo of the red blue green circle square triangle cat dog user assistant what is it".split()
VISION = dict(
    hidden_size=24,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
)


def tokenizer(add_eos: bool = True) -> Any:
    return build_word_tokenizer(WORDS, add_eos=add_eos)


def specials(tok: Any) -> dict[str, int]:
    return dict(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )


def save_clip(out: Path, seed: int = 0, **overrides: Any) -> Path:
    tok = tokenizer()
    torch.manual_seed(seed)
    text = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        **specials(tok),
    )
    config = CLIPConfig(text_config=text, vision_config=VISION, projection_dim=16, **overrides)
    model = CLIPModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(2.0)  # not the init value, so a logit scale left unfilled would show
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def save_llava(out: Path, seed: int = 0, vocab_padding: int = 0, **overrides: Any) -> Path:
    tok = tokenizer(add_eos=False)
    torch.manual_seed(seed)
    text = dict(
        model_type="llama",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        **specials(tok),
    )
    text["vocab_size"] += vocab_padding  # LLaVA-1.5 pads its table past the tokenizer
    config = LlavaConfig(
        text_config=text,
        vision_config=dict(VISION, model_type="clip_vision_model"),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        **overrides,
    )
    LlavaForConditionalGeneration(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_llava(tmp_path_factory.mktemp("llava"))


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make_checkpoint(save_clip, **overrides)``: a fresh variant in its own directory."""

    def make(save: Callable[..., Path], **kwargs: Any) -> Path:
        return save(tmp_path_factory.mktemp(save.__name__), **kwargs)

    return make


def edit_config(directory: Path, **changes: Any) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(json.dumps(config))


def prompts(tok: Any, texts: list[str]) -> dict[str, torch.Tensor]:
    return tok(texts, padding=True, return_tensors="pt")


def image_prompt(zoo: Any, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``<image>`` prompts expanded as the zoo's collator expands them, left-padded for generation."""
    tok = zoo.llm.tokenizer
    rows = [expand_image_token(tok(t)["input_ids"], zoo.image_token_id, zoo.num_image_tokens) for t in texts]
    width = max(map(len, rows))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask
