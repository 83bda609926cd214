"""Text encoders: shapes, EOS/CLS pooling with our word tokenizer, saved weights load back."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from mmzoo.components.text import OpenClipTextEncoder, TextEncoder, TransformersTextEncoder
from mmzoo.components.text.base import eos_positions
from mmzoo.data.tokenizer import build_word_tokenizer

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
WORDS = "a red blue green circle square triangle on the left right of".split()


@pytest.fixture
def tokenizer():
    return build_word_tokenizer(WORDS)


@pytest.fixture
def batch(tokenizer) -> dict[str, torch.Tensor]:
    return tokenizer(["a red circle", "a blue square on the left of a circle"], padding=True, return_tensors="pt")


def _run(encoder: TextEncoder, batch: dict[str, torch.Tensor]):
    encoder.eval()
    with torch.no_grad():
        out = encoder(batch["input_ids"], batch["attention_mask"])
    length = batch["input_ids"].shape[1]
    assert out.tokens.shape == (2, length, encoder.dim)
    assert out.pooled.shape == (2, encoder.dim)
    return out


def test_eos_positions_with_padding_and_without_eos(tokenizer) -> None:
    ids = torch.tensor([[2, 5, 3, 0], [2, 5, 6, 7]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert eos_positions(ids, mask, tokenizer.eos_token_id).tolist() == [2, 3]  # EOS id is 3, not the max


def test_clip_text_pools_at_our_eos(tokenizer, batch) -> None:
    encoder = TransformersTextEncoder(config={"model_type": "clip_text_model", **TINY}, tokenizer=tokenizer, max_length=32)
    cfg = encoder.model.config
    assert (cfg.vocab_size, cfg.eos_token_id, cfg.pad_token_id) == (len(tokenizer), tokenizer.eos_token_id, 0)
    assert tokenizer.eos_token_id != batch["input_ids"].max()  # argmax pooling would be wrong here
    out = _run(encoder, batch)
    eos = (batch["input_ids"] == tokenizer.eos_token_id).int().argmax(1)
    torch.testing.assert_close(out.pooled, out.tokens[torch.arange(2), eos])
    with torch.no_grad():  # and agrees with transformers' own pooler once the eos id is injected
        torch.testing.assert_close(out.pooled, encoder.model(**batch).pooler_output)
    assert encoder.max_length == 32


def test_bert_pools_first_token_and_drops_pooler(tokenizer, batch) -> None:
    encoder = TransformersTextEncoder(config={"model_type": "bert", **TINY}, tokenizer=tokenizer)
    out = _run(encoder, batch)
    torch.testing.assert_close(out.pooled, out.tokens[:, 0])
    assert encoder.model.pooler is None


def test_config_needs_tokenizer() -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        TransformersTextEncoder(config={"model_type": "bert", **TINY})


def test_clip_text_round_trip_through_saved_dir(tmp_path, tokenizer, batch) -> None:
    """A whole CLIP model saved with its tokenizer loads as a text encoder, weights intact."""
    text = {**TINY, "vocab_size": len(tokenizer), "eos_token_id": 3, "pad_token_id": 0, "bos_token_id": 2}
    vision = dict(TINY, image_size=32, patch_size=8)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision)).eval()
    clip.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    encoder = TransformersTextEncoder(str(tmp_path))
    out = _run(encoder, batch)
    with torch.no_grad():
        expected = clip.text_model(**batch).pooler_output
    torch.testing.assert_close(out.pooled, expected)
    assert len(encoder.tokenizer) == len(tokenizer)


def test_bert_round_trip_through_saved_dir(tmp_path, tokenizer, batch) -> None:
    encoder = TransformersTextEncoder(config={"model_type": "bert", **TINY}, tokenizer=tokenizer)
    encoder.model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = TransformersTextEncoder(str(tmp_path))
    torch.testing.assert_close(_run(loaded, batch).tokens, _run(encoder, batch).tokens)


def test_open_clip_text_pools_at_eos_not_argmax(tokenizer, batch) -> None:
    encoder = OpenClipTextEncoder(text_cfg=dict(width=64, heads=2, layers=2), tokenizer=tokenizer, embed_dim=32, max_length=32)
    out = _run(encoder, batch)
    eos = (batch["input_ids"] == tokenizer.eos_token_id).int().argmax(1)
    torch.testing.assert_close(out.pooled, out.tokens[torch.arange(2), eos])
    assert encoder.max_length == 32 and encoder.dim == 64


def test_open_clip_text_tokens_match_open_clip(tokenizer, batch) -> None:
    """Same numbers as open_clip's own text tower (tokens before projection)."""
    from open_clip.model import _build_text_tower

    cfg = dict(width=64, heads=2, layers=2, context_length=32, vocab_size=len(tokenizer), output_tokens=True)
    torch.manual_seed(0)
    tower = _build_text_tower(32, cfg).eval()
    torch.manual_seed(0)
    encoder = OpenClipTextEncoder(text_cfg=dict(width=64, heads=2, layers=2), tokenizer=tokenizer, embed_dim=32, max_length=32)
    result = encoder.load_state_dict({k: v for k, v in tower.state_dict().items() if k != "text_projection"}, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    out = _run(encoder, batch)
    ids = torch.nn.functional.pad(batch["input_ids"], (0, 32 - batch["input_ids"].shape[1]))
    with torch.no_grad():
        _, tokens = tower(ids)
    torch.testing.assert_close(out.tokens, tokens[:, : out.tokens.shape[1]])


def test_open_clip_text_local_pretrained_file(tmp_path, tokenizer, batch) -> None:
    """The user path: ``create_model(name, pretrained=<local file>)``; tokens match ``encode_text``'s."""
    import json

    import open_clip

    (tmp_path / "configs").mkdir()
    vision_cfg = dict(image_size=32, patch_size=8, width=32, layers=1, head_width=32)
    text_cfg = dict(context_length=16, vocab_size=len(tokenizer), width=64, heads=2, layers=2)
    config = {"embed_dim": 32, "vision_cfg": vision_cfg, "text_cfg": text_cfg}
    (tmp_path / "configs" / "mmzoo-test-tiny-text.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "configs")
    source = open_clip.create_model("mmzoo-test-tiny-text").eval()
    torch.save(source.state_dict(), tmp_path / "tiny.pt")
    encoder = OpenClipTextEncoder("mmzoo-test-tiny-text", pretrained=str(tmp_path / "tiny.pt"), tokenizer=tokenizer)
    out = _run(encoder, batch)
    assert encoder.max_length == 16
    ids = torch.nn.functional.pad(batch["input_ids"], (0, 16 - batch["input_ids"].shape[1]))
    with torch.no_grad():
        expected = source.ln_final(source.transformer(source.token_embedding(ids) + source.positional_embedding,
                                                      attn_mask=source.attn_mask))
    torch.testing.assert_close(out.tokens, expected[:, : out.tokens.shape[1]])
