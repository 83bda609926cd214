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
from torch import nn
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    CLIPConfig,
    CLIPModel,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
)

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


# ---- the BLIP family ---------------------------------------------------------------------
BLIP_CLASSES = {"captioning": BlipForConditionalGeneration, "retrieval": BlipForImageTextRetrieval}
QFORMER = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    cross_attention_frequency=2,
)
NUM_QUERIES = 4


def blip_tokenizer() -> Any:
    """BERT-like specials as BLIP's tokenizer has them: [DEC] (its BOS) and [ENC]."""
    return build_word_tokenizer(WORDS, extra_special_tokens=("<image>", "[DEC]", "[ENC]"))


def llm_config(kind: str, tok: Any) -> dict[str, Any]:
    """A tiny decoder-only (opt, llama) or encoder-decoder (t5) LLM config over ``tok``."""
    ids = specials(tok)
    return {
        "opt": dict(
            model_type="opt",
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            word_embed_proj_dim=32,
            max_position_embeddings=64,
            **ids,
        ),
        "llama": dict(
            model_type="llama",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **ids,
        ),
        "t5": dict(
            model_type="t5",
            d_model=32,
            d_ff=64,
            d_kv=16,
            num_layers=2,
            num_heads=2,
            decoder_start_token_id=tok.pad_token_id,
            **ids,
        ),
    }[kind]


def scramble(model: nn.Module, seed: int) -> nn.Module:
    """Noise on every parameter: no tensor keeps an init value (BLIP-2's zero query tokens, unit
    norms) that a wrong mapping could match by accident."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return model


def save_blip(out: Path, kind: str = "captioning", seed: int = 0, **overrides: Any) -> Path:
    tok = blip_tokenizer()
    dec = tok.convert_tokens_to_ids("[DEC]")
    text = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        **specials(tok),
    )
    text.update(bos_token_id=dec, sep_token_id=tok.eos_token_id, label_smoothing=0.1)  # BLIP's
    torch.manual_seed(seed)
    config = BlipConfig(text_config=text, vision_config=VISION, image_text_hidden_size=16, **overrides)
    scramble(BLIP_CLASSES[kind](config), seed).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _save_vlm(out: Path, cls: type, config: Any, tok: Any, seed: int) -> Path:
    scramble(cls(config), seed).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def save_blip2(out: Path, llm: str = "opt", seed: int = 0, **overrides: Any) -> Path:
    tok = tokenizer(add_eos=llm == "t5")
    torch.manual_seed(seed)
    config = Blip2Config(
        vision_config=VISION,
        qformer_config=QFORMER,
        text_config=llm_config(llm, tok),
        num_query_tokens=NUM_QUERIES,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        **overrides,
    )
    return _save_vlm(out, Blip2ForConditionalGeneration, config, tok, seed)


def save_instructblip(out: Path, llm: str = "llama", seed: int = 0, **overrides: Any) -> Path:
    tok, qformer_tok = tokenizer(add_eos=llm == "t5"), tokenizer()
    torch.manual_seed(seed)
    qformer = dict(QFORMER, vocab_size=len(qformer_tok), pad_token_id=0, max_position_embeddings=16)
    config = InstructBlipConfig(
        vision_config=VISION,
        qformer_config=qformer,
        text_config=llm_config(llm, tok),
        num_query_tokens=NUM_QUERIES,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        **overrides,
    )
    _save_vlm(out, InstructBlipForConditionalGeneration, config, tok, seed)
    qformer_tok.save_pretrained(out / "qformer_tokenizer")
    return out


def save_minigpt4(out: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """MiniGPT-4 as released: ``llama_proj`` alone (torch.save, nested under ``model``), beside a
    BLIP-2 checkpoint and a LLaMA. Returns (projector file, blip2 dir, llm dir)."""
    save_blip2(out / "blip2", seed=seed)
    tok = tokenizer(add_eos=False)
    torch.manual_seed(seed)
    llm = LlamaForCausalLM(
        LlamaConfig(**{k: v for k, v in llm_config("llama", tok).items() if k != "model_type"})
    )
    scramble(llm, seed).save_pretrained(out / "llm")
    tok.save_pretrained(out / "llm")
    llama_proj = scramble(nn.Linear(QFORMER["hidden_size"], 32), seed)
    torch.save(
        {"model": {f"llama_proj.{k}": v for k, v in llama_proj.state_dict().items()}}, out / "proj.pth"
    )
    return out / "proj.pth", out / "blip2", out / "llm"


@pytest.fixture(scope="session")
def blip_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {kind: save_blip(tmp_path_factory.mktemp(f"blip_{kind}"), kind) for kind in BLIP_CLASSES}


@pytest.fixture(scope="session")
def blip2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_blip2(tmp_path_factory.mktemp("blip2"))


@pytest.fixture(scope="session")
def instructblip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_instructblip(tmp_path_factory.mktemp("instructblip"))


@pytest.fixture(scope="session")
def minigpt4_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return save_minigpt4(tmp_path_factory.mktemp("minigpt4"))


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
