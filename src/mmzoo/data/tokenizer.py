"""Tokenizers for models without a pretrained one, built offline.

Three kinds, the ``tokenizer`` config group (a data preset picks one; every tiny text
tower, LM and Q-Former text side takes it through ``with_sequence_marks``):
``shapes_tokenizer``: word-level over the embedded dataset's closed vocabulary; ids are a
pure function of the word list (specials first, then words in sorted order), so a
tokenizer rebuilt in a later process matches the embeddings of a saved model.
``caption_bpe_tokenizer``: a byte-level BPE trained with ``tokenizers`` on the captions of
a user's own shards, so any text tokenises without ``<unk>``; trained once and cached
beside the shards (the default of ``data=folder/cc3m/laion/sbu``: benchmarks/RESULTS.md).
``open_clip_bpe_tokenizer``: open_clip's bundled 49k BPE (OpenAI CLIP's), no training.
The zoo's specials are ``<pad> <unk> <s> </s> <image>`` (ids 0-4 in the first two).
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

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
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
    "open_clip_bpe_tokenizer",
    "shard_captions",
    "shapes_tokenizer",
    "special_token_config",
    "with_sequence_marks",
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
    tok: Tokenizer,
    extra_special_tokens: list[str],
    add_bos: bool,
    add_eos: bool,
    model_max_length: int,
    specials: tuple[str, str, str, str] = (PAD, UNK, BOS, EOS),
) -> PreTrainedTokenizerFast:
    """``tok`` with BOS/EOS added as the flags say, as a transformers tokenizer; ``specials``
    names its (pad, unk, bos, eos) tokens."""
    pad, unk, bos, eos = specials
    single = " ".join(([bos] if add_bos else []) + ["$A"] + ([eos] if add_eos else []))
    special_ids = [(s, tok.token_to_id(s)) for s in (bos, eos) if s in single.split()]
    tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=special_ids)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=pad,
        unk_token=unk,
        bos_token=bos,
        eos_token=eos,
        additional_special_tokens=extra_special_tokens,
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,  # decode must give back the text, spaces included
    )


def with_sequence_marks(
    tokenizer: PreTrainedTokenizerFast, add_bos: bool = True, add_eos: bool = True
) -> PreTrainedTokenizerFast:
    """A copy of ``tokenizer`` (one of this module's) that wraps ``tokenizer(text)`` in BOS/EOS as
    the flags say: the data names the vocabulary, each part says how its sequences are marked
    (text towers pool at EOS: both; causal LMs: BOS only)."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    specials = (tokenizer.pad_token, tokenizer.unk_token, tokenizer.bos_token, tokenizer.eos_token)
    extras = [t for t in tokenizer.all_special_tokens if t not in specials]
    return _wrap(backend, extras, add_bos, add_eos, tokenizer.model_max_length, specials)


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


# ---- open_clip's bundled BPE ---------------------------------------------------------------
# OpenAI CLIP's pre-tokenisation (open_clip.tokenizer.SimpleTokenizer.pat) without its specials
CLIP_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
CLIP_BOS, CLIP_EOS = "<start_of_text>", "<end_of_text>"


def open_clip_bpe_tokenizer(
    add_bos: bool = True, add_eos: bool = True, model_max_length: int = 77
) -> PreTrainedTokenizerFast:
    """open_clip's bundled BPE (OpenAI CLIP's 49,408 tokens; the file ships inside the
    package, nothing is downloaded) as a ``tokenizers`` BPE, ids equal to open_clip's.

    BOS/EOS are CLIP's own ``<start_of_text>``/``<end_of_text>``; ``<pad>``, ``<unk>`` and
    ``<image>`` follow at ids 49408-49410. Lowercased, whitespace collapsed (open_clip's
    ``clean='lower'`` without ftfy); byte-level, so no text maps to ``<unk>``.
    """
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    alphabet = list(bytes_to_unicode().values())
    tokens = [*alphabet, *(a + "</w>" for a in alphabet), *("".join(m) for m in merges), CLIP_BOS, CLIP_EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="</w>", fuse_unk=False)
    )
    tok.add_special_tokens([CLIP_BOS, CLIP_EOS, PAD, UNK, IMAGE_TOKEN])
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip(), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_WORDS), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    # "</w>" ends a word: it decodes to a space (the byte-level alphabet's "Ġ"), then bytes to text
    tok.decoder = decoders.Sequence([decoders.Replace("</w>", "Ġ"), decoders.ByteLevel(), decoders.Strip(" ", 0, 1)])
    return _wrap(tok, [IMAGE_TOKEN], add_bos, add_eos, model_max_length, (PAD, UNK, CLIP_BOS, CLIP_EOS))
