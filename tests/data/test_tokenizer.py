"""Tokenizers: the caption BPE covers any text offline, is cached once, and fits the tiny parts."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mmzoo.data import tokenizer as tokenizer_module
from mmzoo.data.shards import ShardWriter
from mmzoo.data.tokenizer import caption_bpe_tokenizer, shapes_tokenizer, shard_captions

CAPTIONS = [
    "A man riding a bicycle down a busy city street.",
    "Two dogs playing with a frisbee on the beach at sunset.",
    "A plate of spaghetti with tomato sauce and fresh basil.",
    "An old wooden boat tied to a dock on a foggy lake.",
    "A little girl in a yellow raincoat jumping in puddles.",
    "Snow-covered mountains behind a quiet alpine village.",
    "A cat sleeping on a stack of books next to a window.",
    "Fresh croissants and coffee on a café table in Paris.",
    "A red double-decker bus passing Big Ben in London.",
    "A surfer catching a large wave in the Pacific Ocean.",
    "Children building a sandcastle while their parents watch.",
    "A vintage car parked in front of a colourful mural.",
    "A bowl of ramen topped with a soft-boiled egg and scallions.",
    "An astronaut floating inside the International Space Station.",
    "A farmer harvesting wheat with a combine at dusk.",
    "A crowded market selling spices, fruit and woven baskets.",
    "A black and white photo of a jazz band on stage.",
    "Hikers crossing a suspension bridge over a deep gorge.",
    "A giraffe eating leaves from the top of an acacia tree.",
    "A laptop, a notebook and a cup of tea on a wooden desk.",
] * 3  # BPE merges need pairs seen at least twice (min_frequency)


@pytest.fixture(scope="module")
def caption_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real-looking captions whose words the shapes vocabulary mostly lacks: 3 shards."""
    out = tmp_path_factory.mktemp("captions") / "shards"
    with ShardWriter(out, samples_per_shard=20) as writer:
        for i, caption in enumerate(CAPTIONS):
            writer.write(Image.new("RGB", (8, 8), (i * 4, 0, 0)), caption)
    return out


@pytest.fixture(scope="module")
def bpe(caption_shards: Path) -> tokenizer_module.PreTrainedTokenizerFast:
    return caption_bpe_tokenizer(caption_shards, vocab_size=600)


def test_shard_captions_reads_every_txt(caption_shards: Path) -> None:
    urls = sorted(str(p) for p in caption_shards.glob("*.tar"))
    assert sorted(shard_captions(urls)) == sorted(CAPTIONS)
    assert len(shard_captions(urls, max_captions=25)) == 25


def test_no_unknown_tokens_where_the_word_tokenizer_has_many(bpe) -> None:  # noqa: ANN001
    words = shapes_tokenizer()
    unk_rate = sum(words(c).input_ids.count(words.unk_token_id) for c in CAPTIONS) / sum(
        len(words(c).input_ids) - 2 for c in CAPTIONS
    )
    assert unk_rate > 0.5  # the baseline: the shapes vocabulary turns user captions into <unk>
    unseen = "Zoë's 3 hamsters ate 12 jalapeños 🌶️ — ¿qué? 東京"
    for text in [*CAPTIONS, unseen]:
        assert bpe.unk_token_id not in bpe(text).input_ids


@settings(max_examples=60, deadline=None)
@given(text=st.text(st.characters(exclude_categories=("Cs",)), max_size=60))
def test_decode_gives_back_the_normalised_text(bpe, text: str) -> None:  # noqa: ANN001
    ids = bpe(text, add_special_tokens=False).input_ids
    assert bpe.unk_token_id not in ids
    specials_free = all(s not in text.lower() for s in bpe.all_special_tokens)
    if specials_free:
        assert bpe.decode(ids) == bpe.backend_tokenizer.normalizer.normalize_str(text)


def test_lowercasing_is_the_only_change(caption_shards: Path, bpe) -> None:  # noqa: ANN001
    text = "A Café in PARIS, 7 tables."
    assert bpe.decode(bpe(text, add_special_tokens=False).input_ids) == text.lower()
    cased = caption_bpe_tokenizer(caption_shards, vocab_size=600, lowercase=False)
    assert cased.decode(cased(text, add_special_tokens=False).input_ids) == text
    assert cased.get_vocab() != bpe.get_vocab()


def test_specials_match_the_word_tokenizer_and_flags_wrap(caption_shards: Path, bpe) -> None:  # noqa: ANN001
    words = shapes_tokenizer()
    for name in ("pad_token_id", "unk_token_id", "bos_token_id", "eos_token_id"):
        assert getattr(bpe, name) == getattr(words, name)
    assert bpe.convert_tokens_to_ids("<image>") == words.convert_tokens_to_ids("<image>") == 4
    ids = bpe("a cat").input_ids
    assert ids[0] == bpe.bos_token_id and ids[-1] == bpe.eos_token_id
    lm = caption_bpe_tokenizer(caption_shards, vocab_size=600, add_eos=False)
    assert lm("a cat").input_ids == ids[:-1] and lm.get_vocab() == bpe.get_vocab()  # one vocabulary
    plain = caption_bpe_tokenizer(caption_shards, vocab_size=600, add_bos=False, add_eos=False)
    assert plain("a cat").input_ids == ids[1:-1]
    assert bpe("look: <image> here").input_ids.count(4) == 1  # the placeholder stays one token


def test_cached_beside_the_shards_and_keyed(
    caption_shards: Path, bpe, monkeypatch: pytest.MonkeyPatch, tmp_path: Path  # noqa: ANN001
) -> None:
    folders = sorted(p.name for p in caption_shards.glob("tokenizer-*"))
    assert len(folders) >= 1 and all((caption_shards / f / "tokenizer.json").is_file() for f in folders)
    monkeypatch.setattr(tokenizer_module, "train_byte_level_bpe", lambda *a, **k: pytest.fail("retrained"))
    again = caption_bpe_tokenizer(str(caption_shards / "*.tar"), vocab_size=600)  # another spelling
    assert again.get_vocab() == bpe.get_vocab()
    with pytest.raises(pytest.fail.Exception, match="retrained"):
        caption_bpe_tokenizer(caption_shards, vocab_size=601)  # another key
    copy = tmp_path / "copy"
    copy.mkdir()
    for tar in caption_shards.glob("*.tar"):
        (copy / tar.name).write_bytes(tar.read_bytes())
    moved = caption_bpe_tokenizer(copy, vocab_size=600, cache_dir=caption_shards)  # same names and sizes
    assert moved.get_vocab() == bpe.get_vocab()
    (copy / "000000.tar").write_bytes((copy / "000000.tar").read_bytes() + b"\0" * 512)
    with pytest.raises(pytest.fail.Exception, match="retrained"):
        caption_bpe_tokenizer(copy, vocab_size=600, cache_dir=caption_shards)  # the data changed


def _build(shards: str, cache: str, barrier: mp.synchronize.Barrier, out: str) -> None:
    """One of two racing processes: both train (slowly), then both try to publish."""
    import json
    import time

    train = tokenizer_module.train_byte_level_bpe

    def slow_train(*args: object, **kwargs: object) -> object:
        tok = train(*args, **kwargs)
        time.sleep(0.5)  # both are past the cache check before either renames
        return tok

    tokenizer_module.train_byte_level_bpe = slow_train  # in this child process only
    barrier.wait(30)
    tok = caption_bpe_tokenizer(shards, vocab_size=300, cache_dir=cache)
    Path(out).write_text(json.dumps(sorted(tok.get_vocab().items())))


def test_concurrent_builds_agree_and_leave_one_cache(caption_shards: Path, tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    cache, outs = tmp_path / "cache", [tmp_path / f"vocab{i}.json" for i in range(2)]
    children = [ctx.Process(target=_build, args=(str(caption_shards), str(cache), barrier, str(o))) for o in outs]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [c.exitcode for c in children] == [0, 0]  # the loser of the rename did not fail
    assert outs[0].read_text() == outs[1].read_text()  # and uses the winner's tokenizer
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # no temporary left
    (folder,) = cache.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["key.json", "tokenizer.json"]


@pytest.mark.slow
def test_tiny_parts_build_and_run_on_it(bpe, caption_shards: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """What a tiny preset does with ``tokenizer: {_target_: ...caption_bpe_tokenizer}``."""
    from transformers import AutoTokenizer

    from mmzoo.components.llm import LanguageModel
    from mmzoo.components.text import OpenClipTextEncoder, TransformersTextEncoder

    batch = bpe(CAPTIONS[:4], padding=True, return_tensors="pt")
    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    clip_text = TransformersTextEncoder(config={"model_type": "clip_text_model", **tiny}, tokenizer=bpe, max_length=64)
    open_clip_text = OpenClipTextEncoder(
        text_cfg={"width": 32, "heads": 2, "layers": 1}, tokenizer=bpe, embed_dim=32, max_length=64
    )
    for tower in (clip_text, open_clip_text):
        features = tower(batch.input_ids, batch.attention_mask)
        assert features.pooled.shape == (4, 32) and torch.isfinite(features.pooled).all()

    lm_tok = caption_bpe_tokenizer(caption_shards, vocab_size=600, add_eos=False)
    lm = LanguageModel(config={"model_type": "llama", "num_key_value_heads": 2, **tiny}, tokenizer=lm_tok)
    ids = lm_tok(CAPTIONS[:2], padding=True, return_tensors="pt")
    out = lm(lm.embed(ids.input_ids), ids.attention_mask, labels=ids.input_ids.masked_fill(ids.attention_mask == 0, -100))
    assert torch.isfinite(out.loss)
    lm.save_pretrained(tmp_path / "lm")  # what a run saves: the tokenizer travels with the weights
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "lm")
    assert reloaded(CAPTIONS[5]).input_ids == lm_tok(CAPTIONS[5]).input_ids
    assert reloaded.decode(reloaded(CAPTIONS[5], add_special_tokens=False).input_ids) == CAPTIONS[5].lower()
