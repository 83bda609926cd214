"""Word-level tokenizers built in memory, so tiny models need no download.

Ids are a pure function of the word list (specials first, then words in sorted order),
so a tokenizer rebuilt in a later process matches the embeddings of a saved model.
Real models bring their own tokenizer (``AutoTokenizer.from_pretrained``).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from mmzoo.components.tokenization import special_token_config  # re-exported: its old home

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
IMAGE_TOKEN = "<image>"

__all__ = [
    "BOS",
    "EOS",
    "IMAGE_TOKEN",
    "PAD",
    "UNK",
    "build_word_tokenizer",
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
    single = " ".join(([BOS] if add_bos else []) + ["$A"] + ([EOS] if add_eos else []))
    special_ids = [(t, vocab[t]) for t in (BOS, EOS) if t in single]
    tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=special_ids)

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=list(extra_special_tokens),
        model_max_length=model_max_length,
        padding_side="right",
    )


def shapes_tokenizer(add_bos: bool = True, add_eos: bool = True) -> PreTrainedTokenizerFast:
    """The tokenizer of every tiny text model trained on the embedded ``shapes`` data."""
    from mmzoo.data.shapes import vocabulary
    from mmzoo.data.templates import prompt_words

    return build_word_tokenizer([*vocabulary(), *prompt_words()], add_bos=add_bos, add_eos=add_eos)
