"""Tokenizers for models without a pretrained one, built offline.

Two kinds. ``shapes_tokenizer``: word-level over the embedded dataset's closed vocabulary;
ids are a pure function of the word list (specials first, then words in sorted order),
so a tokenizer rebuilt in a later process matches the embeddings of a saved model.
``caption_bpe_tokenizer``: a byte-level BPE trained with ``tokenizers`` on the captions of
a user's own shards, so any text tokenises without ``<unk>``; trained once and cached
beside the shards. Both share the specials (``<pad> <unk> <s> </s> <image>``, ids 0-4).
Real models bring their own tokenizer (``AutoTokenizer.from_pretrained``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tarfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from mmzoo.components.tokenization import special_token_config  # re-exported: its old home
from mmzoo.data.webdata import expand_urls

log = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
IMAGE_TOKEN = "<image>"

__all__ = [
    "BOS",
    "EOS",
    "IMAGE_TOKEN",
    "PAD",
    "UNK",
    "build_word_tokenizer",
    "caption_bpe_tokenizer",
    "shard_captions",
    "shapes_tokenizer",
    "special_token_config",
]


def build_word_tokenizer(
    words: Iterable[str],
    extra_special_tokens: Iterable[str] = (IMAGE_TOKEN,),
    add_bos: bool = True,
    add_eos: bool = True,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer over ``words`` plus punctuation.

    ``add_bos``/``add_eos`` decide what ``tokenizer(text)`` wraps a sequence with; text
    encoders want both (CLIP pools at EOS), language models usually only BOS.
    """
    specials = [PAD, UNK, BOS, EOS, *extra_special_tokens]
    vocab_words = sorted({w.lower() for w in words} | set(".,?!:;'\"#()-<>/") - set(specials))
    vocab = {tok: i for i, tok in enumerate([*specials, *vocab_words])}

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return _wrap(tok, list(extra_special_tokens), add_bos, add_eos, model_max_length)


def _wrap(
    tok: Tokenizer, extra_special_tokens: list[str], add_bos: bool, add_eos: bool, model_max_length: int
) -> PreTrainedTokenizerFast:
    """``tok`` with BOS/EOS added as the flags say, as a transformers tokenizer with the zoo's specials."""
    single = " ".join(([BOS] if add_bos else []) + ["$A"] + ([EOS] if add_eos else []))
    special_ids = [(s, tok.token_to_id(s)) for s in (BOS, EOS) if s in single]
    tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=special_ids)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=extra_special_tokens,
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,  # decode must give back the text, spaces included
    )


def shapes_tokenizer(add_bos: bool = True, add_eos: bool = True) -> PreTrainedTokenizerFast:
    """The tokenizer of every tiny text model trained on the embedded ``shapes`` data."""
    from mmzoo.data.shapes import vocabulary
    from mmzoo.data.templates import prompt_words

    return build_word_tokenizer([*vocabulary(), *prompt_words()], add_bos=add_bos, add_eos=add_eos)


# ---- byte-level BPE on a user's captions -------------------------------------------------
BPE_RECIPE = 1  # bump when training changes, so cached tokenizers are rebuilt
_SPECIALS = [PAD, UNK, BOS, EOS, IMAGE_TOKEN]


def _shard_identity(urls: Sequence[str]) -> list[tuple[str, int | None]]:
    """(file name, size) of each local shard, (url, None) of a remote one: what the cache is keyed on.

    Names, not paths, so a moved or copied shard folder keeps its tokenizer.
    """
    out: list[tuple[str, int | None]] = []
    for url in urls:
        path = Path(url)
        remote = "://" in url or url.startswith("pipe:")
        out.append((url, None) if remote else (path.name, path.stat().st_size if path.is_file() else -1))
    return out


def _txt_members(tar: tarfile.TarFile) -> Iterator[str]:
    for info in tar:
        if info.isreg() and info.name.lower().endswith(".txt"):
            data = tar.extractfile(info).read()  # type: ignore[union-attr]
            try:
                text = data.decode("utf-8-sig").strip()
            except UnicodeDecodeError:
                continue  # the reader skips these samples (bad_caption): train on what it keeps
            if text:
                yield text


def shard_captions(urls: Sequence[str], max_captions: int = 200_000, seed: int = 0) -> list[str]:
    """Up to ``max_captions`` captions (the ``.txt`` members) from shards visited in a seeded order.

    Local shards are opened for random access, so image data is skipped, not read;
    remote ones are streamed. A damaged or missing shard gives what it can (logged).
    """
    order = list(urls)
    random.Random(seed).shuffle(order)  # a sample of web-scale data spans its shards
    captions: list[str] = []
    for url in order:
        try:
            if "://" in url or url.startswith("pipe:"):
                import webdataset as wds

                with wds.gopen(url) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
                    captions.extend(_take(_txt_members(tar), max_captions - len(captions)))
            else:
                with tarfile.open(url) as tar:
                    captions.extend(_take(_txt_members(tar), max_captions - len(captions)))
        except Exception as exn:  # a tokenizer from most of the captions beats no tokenizer
            log.warning("captions of %s: stopped at %r", url, exn)
        if len(captions) >= max_captions:
            break
    return captions


def _take(items: Iterator[str], n: int) -> Iterator[str]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item


def _cache_folder(urls: Sequence[str], cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir``, else the shard folder when it is local and writable, else ``$MMZOO_CACHE/tokenizers``."""
    if cache_dir is not None:
        return Path(cache_dir)
    first = Path(urls[0])
    if not ("://" in urls[0] or urls[0].startswith("pipe:")) and os.access(first.parent, os.W_OK):
        return first.parent
    root = os.environ.get("MMZOO_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "mmzoo") / "tokenizers"


def train_byte_level_bpe(
    captions: Iterable[str], vocab_size: int, lowercase: bool = True, min_frequency: int = 2
) -> Tokenizer:
    """A byte-level BPE (GPT-2's scheme) with the zoo's specials at ids 0-4; covers every string.

    All 256 bytes are in the initial alphabet, so no text ever maps to ``<unk>``.
    """
    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(captions, trainer=trainer)
    return tok


def caption_bpe_tokenizer(
    shards: str | Sequence[str],
    vocab_size: int = 8192,
    add_bos: bool = True,
    add_eos: bool = True,
    max_captions: int = 200_000,
    lowercase: bool = True,
    cache_dir: str | os.PathLike | None = None,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on the captions of ``shards`` (any spec ``expand_urls`` takes).

    Made once and cached as ``<shard folder>/tokenizer-<hash>/tokenizer.json`` (or in
    ``cache_dir``), keyed on the shards' names and sizes, ``vocab_size``, ``max_captions``,
    ``lowercase`` and the specials; ``add_bos``/``add_eos`` only change what a sequence is
    wrapped with, so a text tower (both) and an LM (BOS only) share one vocabulary.
    Lowercased by default, as CLIP's BPE and the shapes tokenizer are: a tiny vocabulary
    then spends no merges on case, and ``decode(encode(t)) == t.lower()``; with
    ``lowercase=False`` decoding gives back the text exactly. Safe to call from several
    processes at once: each trains into its own temporary folder, renamed into place;
    the first rename wins and the others load the winner.
    """
    urls = expand_urls(shards)
    key = json.dumps(
        {
            "recipe": BPE_RECIPE,
            "shards": _shard_identity(urls),
            "vocab_size": vocab_size,
            "max_captions": max_captions,
            "lowercase": lowercase,
            "specials": _SPECIALS,
        },
        sort_keys=True,
    )
    folder = _cache_folder(urls, cache_dir)
    final = folder / f"tokenizer-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if not (final / "tokenizer.json").is_file():
        captions = shard_captions(urls, max_captions)
        if not captions:
            raise ValueError(f"no captions (.txt members) in the shards of {shards!r} to train a tokenizer on")
        log.info("training a byte-level BPE (vocab %d) on %d captions into %s", vocab_size, len(captions), final)
        tmp = folder / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            train_byte_level_bpe(captions, vocab_size, lowercase).save(str(tmp / "tokenizer.json"))
            (tmp / "key.json").write_text(key)  # what the hash stands for, for a human
            tmp.rename(final)
        except OSError:
            if not (final / "tokenizer.json").is_file():  # not a lost race: a real failure
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    tok = Tokenizer.from_file(str(final / "tokenizer.json"))
    return _wrap(tok, [IMAGE_TOKEN], add_bos, add_eos, model_max_length)
