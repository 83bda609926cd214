"""BLIP's text side: three modes, and sharing exactly what the paper shares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from mmzoo.components.text.blip_text import BlipText
from mmzoo.data.tokenizer import build_word_tokenizer, shapes_tokenizer

CONFIG = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
SELF_ATTENTION = re.compile(r"encoder\.layer\.\d+\.attention\.")


@pytest.fixture(scope="module")
def text() -> BlipText:
    torch.manual_seed(0)
    return BlipText(config=CONFIG, tokenizer=shapes_tokenizer(), image_dim=24, max_length=16).eval()


@pytest.fixture
def batch(text: BlipText) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    enc = text.tokenizer(["a red circle above a blue square", "a green triangle"], padding=True, return_tensors="pt")
    image = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(0))
    return enc["input_ids"], enc["attention_mask"], image


def test_decoder_shares_everything_but_self_attention(text: BlipText) -> None:
    encoder = dict(text.encoder.named_parameters())
    encoder_ptrs = {p.data_ptr() for p in encoder.values()}
    checked = 0
    for name, param in text.decoder.bert.named_parameters(remove_duplicate=False):
        if SELF_ATTENTION.search(name):
            assert param.data_ptr() not in encoder_ptrs, f"self-attention {name} must be the decoder's own"
        else:
            assert param is encoder[name], f"{name} must be the encoder's own parameter"
            checked += 1
    assert checked > 0
    head = dict(text.decoder.cls.named_parameters(remove_duplicate=False))
    assert head["predictions.decoder.weight"] is encoder["embeddings.word_embeddings.weight"]  # tied LM head
    assert head["predictions.transform.dense.weight"].data_ptr() not in encoder_ptrs
    # exactly the self-attention blocks are duplicated: each layer's query/key/value + output dense/LayerNorm
    own = {n for n, p in text.decoder.bert.named_parameters() if p.data_ptr() not in encoder_ptrs}
    assert own == {n for n in encoder if SELF_ATTENTION.search(n)}


def test_a_decoder_step_moves_the_shared_weights_of_the_encoder(batch) -> None:
    torch.manual_seed(0)
    text = BlipText(config=CONFIG, tokenizer=shapes_tokenizer(), image_dim=24, max_length=16)
    ids, mask, image = batch
    before = {n: p.detach().clone() for n, p in text.encoder.named_parameters()}
    optimizer = torch.optim.SGD(text.decoder.parameters(), lr=1.0)
    text.decode(ids, mask, image).logsumexp(-1).mean().backward()
    optimizer.step()
    ffn = "encoder.layer.0.intermediate.dense.weight"
    cross = "encoder.layer.0.crossattention.self.key.weight"
    assert not torch.equal(text.encoder.get_parameter(ffn), before[ffn])
    assert not torch.equal(text.encoder.get_parameter(cross), before[cross])
    self_attention = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(text.encoder.get_parameter(self_attention), before[self_attention])


def test_unimodal_mode_reads_no_image_grounded_modes_do(text: BlipText, batch) -> None:
    ids, mask, image = batch
    with torch.no_grad():
        plain = text(ids, mask)
        grounded = text.encode_grounded(ids, mask, image)
        other = text.encode_grounded(ids, mask, image.flip(0))
        logits = text.decode(ids, mask, image)
        other_logits = text.decode(ids, mask, image.flip(0))
    assert plain.tokens.shape == grounded.shape == (2, ids.shape[1], 32)
    torch.testing.assert_close(plain.pooled, plain.tokens[:, 0])
    assert not torch.allclose(grounded, other) and not torch.allclose(logits, other_logits)
    assert not torch.allclose(plain.tokens, grounded)


def test_decoder_is_causal_and_matches_the_librarys_causal_path(text: BlipText, batch) -> None:
    ids, mask, image = batch
    changed = ids.clone()
    changed[:, 3] = 9
    with torch.no_grad():
        logits = text.decode(ids, mask, image)
        after = text.decode(changed, mask, image)
        library = text.decoder(
            input_ids=text._with_first(ids, text.dec_token_id), attention_mask=mask,
            encoder_hidden_states=image, is_decoder=True, use_cache=False,
        ).logits
    torch.testing.assert_close(after[:, :3], logits[:, :3])
    assert not torch.allclose(after[0, 3:], logits[0, 3:])
    real = mask.bool()
    torch.testing.assert_close(logits[real], library[real])


def test_task_tokens_replace_the_first_token() -> None:
    tokenizer = build_word_tokenizer(["red", "circle"], extra_special_tokens=("[ENC]", "[DEC]"))
    text = BlipText(config=CONFIG, tokenizer=tokenizer, image_dim=24).eval()
    vocab = tokenizer.get_vocab()
    assert (text.enc_token_id, text.dec_token_id) == (vocab["[ENC]"], vocab["[DEC]"])
    ids = tokenizer(["red circle"], return_tensors="pt")["input_ids"]
    mask, image = torch.ones_like(ids), torch.randn(1, 3, 24)
    as_enc = ids.clone()
    as_enc[:, 0] = vocab["[ENC]"]
    with torch.no_grad():
        torch.testing.assert_close(
            text.encode_grounded(ids, mask, image),
            text.encoder(input_ids=as_enc, attention_mask=mask, encoder_hidden_states=image).last_hidden_state,
        )
    # without [DEC] in the vocabulary the decoder starts from BOS
    assert BlipText(config=CONFIG, tokenizer=shapes_tokenizer(), image_dim=24).dec_token_id == 2


def test_greedy_generation_follows_the_decoder(text: BlipText, batch) -> None:
    ids, _, image = batch
    prompt = ids[:, :2]
    new = text.generate(image, prompt, max_new_tokens=3)
    assert new.shape[0] == 2 and 1 <= new.shape[1] <= 3
    with torch.no_grad():
        first = text.decode(prompt, torch.ones_like(prompt), image)[:, -1].argmax(-1)
        second_in = torch.cat([prompt, first[:, None]], dim=1)
        second = text.decode(second_in, torch.ones_like(second_in), image)[:, -1].argmax(-1)
    assert torch.equal(new[:, 0], first)
    if new.shape[1] > 1:
        assert torch.equal(new[:, 1], second)


def test_image_width_mismatch_and_checkpoint_loading(tmp_path: Path) -> None:
    from transformers import BlipConfig, BlipForImageTextRetrieval

    with pytest.raises(ValueError, match="exactly one"):
        BlipText(tokenizer=shapes_tokenizer())
    tokenizer = shapes_tokenizer()
    config = BlipConfig(
        text_config={**CONFIG, "vocab_size": len(tokenizer), "encoder_hidden_size": 24},
        vision_config=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        projection_dim=16, image_text_hidden_size=16,
    )
    source = BlipForImageTextRetrieval(config)
    source.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="24-wide image tokens.*gives 48"):
        BlipText(name_or_path=str(tmp_path), image_dim=48)
    text = BlipText(name_or_path=str(tmp_path), image_dim=24)
    for name, tensor in source.text_encoder.state_dict().items():
        assert torch.equal(text.encoder.state_dict()[name], tensor), name
    # the decoder got the shared weights through the encoder
    assert torch.equal(text.decoder.bert.encoder.layer[0].output.dense.weight,
                       source.text_encoder.encoder.layer[0].output.dense.weight)
