"""What a part built from a config must share with its tokenizer.

Why here and not in ``mmzoo.data``: parts (``components/``) must not import the data
package (the layers are parts <- models <- lit, with data beside them), yet a text tower
or LM built from a config dict takes its vocabulary size and special ids from whatever
tokenizer the data path uses. This is the one place both sides read that contract from.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def special_token_config(tokenizer: PreTrainedTokenizerBase) -> dict[str, int | None]:
    """Vocabulary size and special ids a model built from a config must share with its tokenizer."""
    return {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
