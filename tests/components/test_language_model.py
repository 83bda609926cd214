"""LanguageModel: embeddings in, loss / generation out, for causal and seq2seq LMs."""

from __future__ import annotations

import pytest
import torch

from mmzoo.components.llm import LanguageModel
from mmzoo.data.tokenizer import build_word_tokenizer

WORDS = "a red blue green circle square triangle on the left right of".split()
LLAMA = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)
T5 = dict(model_type="t5", d_model=64, d_ff=128, d_kv=32, num_layers=2, num_decoder_layers=2, num_heads=2)


@pytest.fixture
def tokenizer():
    return build_word_tokenizer(WORDS, add_eos=False)


@pytest.fixture
def llama(tokenizer) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(config=LLAMA, tokenizer=tokenizer).eval()


def _batch(tokenizer, padding_side: str = "right") -> dict[str, torch.Tensor]:
    tokenizer.padding_side = padding_side
    return tokenizer(["a red circle", "a blue square on the left"], padding=True, return_tensors="pt")


def test_attributes_and_injected_specials(llama: LanguageModel, tokenizer) -> None:
    cfg = llama.model.config
    assert (cfg.vocab_size, cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (len(tokenizer), 0, 2, 3)
    assert llama.dim == 64 and llama.max_length == 128 and not llama.is_encoder_decoder
    assert llama.tokenizer is tokenizer
    assert llama.embed(torch.tensor([[2, 5, 6]])).shape == (1, 3, 64)


def test_loss_on_embeddings_equals_loss_on_ids(llama: LanguageModel, tokenizer) -> None:
    batch = _batch(tokenizer)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = llama(llama.embed(batch["input_ids"]), batch["attention_mask"], labels=labels).loss
    expected = llama.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert llama.model.get_input_embeddings().weight.grad is not None


def test_generate_with_and_without_cache_agree(llama: LanguageModel, tokenizer) -> None:
    batch = _batch(tokenizer, padding_side="left")
    embeds = llama.embed(batch["input_ids"])
    kwargs = dict(max_new_tokens=6, do_sample=False, min_new_tokens=6)
    cached = llama.generate(embeds, batch["attention_mask"], use_cache=True, **kwargs)
    uncached = llama.generate(embeds, batch["attention_mask"], use_cache=False, **kwargs)
    assert cached.shape == (2, 6)  # only new tokens
    assert torch.equal(cached, uncached)
    # and greedy from embeddings continues exactly as greedy from ids
    from_ids = llama.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
    assert torch.equal(cached, from_ids[:, batch["input_ids"].shape[1]:])


def test_generate_sampling(llama: LanguageModel, tokenizer) -> None:
    batch = _batch(tokenizer, padding_side="left")
    torch.manual_seed(0)
    out = llama.generate(llama.embed(batch["input_ids"]), batch["attention_mask"], max_new_tokens=4,
                         min_new_tokens=4, do_sample=True, top_k=5, temperature=0.8)
    assert out.shape == (2, 4) and out.dtype == torch.long


def test_save_pretrained_round_trip(tmp_path, llama: LanguageModel, tokenizer) -> None:
    batch = _batch(tokenizer)
    llama.save_pretrained(tmp_path)
    loaded = LanguageModel(str(tmp_path)).eval()
    assert len(loaded.tokenizer) == len(tokenizer)
    with torch.no_grad():
        a = llama(llama.embed(batch["input_ids"]), batch["attention_mask"]).logits
        b = loaded(loaded.embed(batch["input_ids"]), batch["attention_mask"]).logits
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("arch", [
    dict(model_type="opt", hidden_size=64, word_embed_proj_dim=64, ffn_dim=128, num_hidden_layers=2,
         num_attention_heads=2, max_position_embeddings=128),
    dict(model_type="gpt2", n_embd=64, n_layer=2, n_head=2, n_positions=128),
])
def test_other_causal_families(tokenizer, arch: dict) -> None:
    lm = LanguageModel(config=arch, tokenizer=tokenizer)
    batch = _batch(tokenizer)
    out = lm(lm.embed(batch["input_ids"]), batch["attention_mask"], labels=batch["input_ids"])
    assert out.loss.ndim == 0 and lm.dim == 64 and lm.max_length == 128


def test_seq2seq_t5(tokenizer) -> None:
    t5 = LanguageModel(config=T5, tokenizer=tokenizer).eval()
    assert t5.is_encoder_decoder and t5.dim == 64
    batch = _batch(tokenizer)
    target = tokenizer(["a circle", "a square"], padding=True, return_tensors="pt")
    labels = target["input_ids"].masked_fill(target["attention_mask"] == 0, -100)
    out = t5(t5.embed(batch["input_ids"]), batch["attention_mask"], labels=labels)
    assert out.loss.ndim == 0 and out.logits.shape[:2] == labels.shape
    generated = t5.generate(t5.embed(batch["input_ids"]), batch["attention_mask"], max_new_tokens=3, min_new_tokens=3)
    assert generated.shape == (2, 3)


def test_missing_pad_token_is_filled(tmp_path) -> None:
    tokenizer = build_word_tokenizer(WORDS)
    tokenizer.pad_token = None
    lm = LanguageModel(config=LLAMA, tokenizer=tokenizer)
    assert lm.tokenizer.pad_token == tokenizer.unk_token


def test_needs_exactly_one_source(tokenizer) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        LanguageModel(tokenizer=tokenizer)
    with pytest.raises(ValueError, match="tokenizer"):
        LanguageModel(config=LLAMA)


def _save_tiny_pretrained_llama(folder):
    """A tiny LLaMA and its tokenizer saved as a user's pretrained checkpoint would be: the
    tokenizer knows nothing of the zoo's ``<image>`` placeholder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from mmzoo.data.shapes import vocabulary
    from mmzoo.data.templates import prompt_words
    from mmzoo.data.tokenizer import build_word_tokenizer

    tokenizer = build_word_tokenizer([*vocabulary(), *prompt_words()], extra_special_tokens=(), add_eos=False)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return len(tokenizer)


def test_a_pretrained_llm_gets_the_image_token_and_resized_embeddings(tmp_path):
    from mmzoo.components.llm import LanguageModel
    from mmzoo.types import IMAGE_TOKEN

    vocab = _save_tiny_pretrained_llama(tmp_path / "llama")
    llm = LanguageModel(name_or_path=str(tmp_path / "llama"))
    image_id = llm.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert image_id == vocab  # appended after the original vocabulary
    assert llm.model.get_input_embeddings().num_embeddings == vocab + 1
    assert llm.tokenizer(f"{IMAGE_TOKEN} red", add_special_tokens=False)["input_ids"][0] == image_id  # never split


@pytest.mark.slow
def test_llava_trains_end_to_end_on_a_locally_saved_pretrained_llm(tmp_path):
    from tests.conftest import run_zoo

    _save_tiny_pretrained_llama(tmp_path / "llama")
    llm = ["llm=tiny_llama", "llm.config=null", "llm.tokenizer=null", f"+llm.name_or_path={tmp_path / 'llama'}"]
    metrics = run_zoo(tmp_path / "run", ["model=llava", "encoder=tiny_clip_vit", *llm, "trainer.max_steps=3",
                                         "trainer.limit_test_batches=1", "evaluation.blind=[]"])
    assert metrics["train"]["steps"] == 3 and metrics["metrics"]["caption/cider"] >= 0
    from mmzoo.api import from_pretrained

    module = from_pretrained(tmp_path / "run")  # the run reloads with the resized embeddings
    assert len(module.generate(torch.randn(1, 3, 32, 32), "what colour is the circle?")) == 1
