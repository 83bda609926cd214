"""The language side of a vision-language model: a transformers causal or seq2seq LM.

Multimodal models never hand token ids to the LM: they embed the text (``embed``), splice
visual tokens in, and run or generate from ``inputs_embeds``. This wrapper gives LLaMA,
Vicuna, OPT, GPT-2 and Flan-T5 that one interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)
from transformers.utils import ModelOutput

from mmzoo.components.tokenization import special_token_config
from mmzoo.types import IMAGE_TOKEN


def _context_size(config: Any, tokenizer: PreTrainedTokenizerBase) -> int:
    """The longest sequence the model was built for (T5 has relative positions: ask the tokenizer)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return min(int(tokenizer.model_max_length), 1 << 16)


class LanguageModel(nn.Module):
    """A causal or encoder-decoder LM driven by input embeddings.

    Give ``name_or_path`` (hub id or local dir; tokenizer defaults to the one saved there)
    or ``config`` (a dict with ``model_type``; vocabulary size and pad/bos/eos ids come from
    ``tokenizer``, which is then required). The model class follows
    ``config.is_encoder_decoder``. Remote code runs only with ``trust_remote_code=True``.
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        config: dict[str, Any] | None = None,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        torch_dtype: str | torch.dtype | None = None,
        gradient_checkpointing: bool = False,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        extra_special_tokens: Sequence[str] = (IMAGE_TOKEN,),
    ) -> None:
        super().__init__()
        if (name_or_path is None) == (config is None):
            raise ValueError("give exactly one of name_or_path (pretrained) or config (random init)")
        if isinstance(tokenizer, str) or (tokenizer is None and name_or_path is not None):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer or name_or_path, trust_remote_code=trust_remote_code)
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to build a language model from a config")
        if tokenizer.pad_token is None:  # LLaMA ships without one; LLaVA pads with unk
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        missing = [t for t in extra_special_tokens if t not in tokenizer.get_vocab()]
        if missing:  # a pretrained tokenizer does not know the image placeholder yet
            tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
        self.tokenizer = tokenizer

        dtype = getattr(torch, torch_dtype) if isinstance(torch_dtype, str) else torch_dtype
        options: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if attn_implementation is not None:
            options["attn_implementation"] = attn_implementation
        if name_or_path is not None:
            hf_config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
            model_class = AutoModelForSeq2SeqLM if hf_config.is_encoder_decoder else AutoModelForCausalLM
            self.model = model_class.from_pretrained(name_or_path, config=hf_config, dtype=dtype, **options)
            if len(tokenizer) > self.model.get_input_embeddings().num_embeddings:
                self.model.resize_token_embeddings(len(tokenizer))  # the tokens added above
        else:
            config = dict(config)
            model_type = config.pop("model_type")
            specials = special_token_config(tokenizer)
            # a checkpoint's table may be padded past the tokenizer (LLaVA-1.5: 32064 rows, 32002 tokens)
            specials["vocab_size"] = max(specials["vocab_size"], int(config.get("vocab_size") or 0))
            hf_config = AutoConfig.for_model(model_type, **{**config, **specials})
            if hf_config.is_encoder_decoder:
                hf_config.decoder_start_token_id = tokenizer.pad_token_id  # T5 starts decoding at pad
            model_class = AutoModelForSeq2SeqLM if hf_config.is_encoder_decoder else AutoModelForCausalLM
            options.pop("trust_remote_code")
            self.model = model_class.from_config(hf_config, dtype=dtype, **options)
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):  # generation stops where the data path ends
            setattr(self.model.generation_config, key, getattr(tokenizer, key))
        if gradient_checkpointing:  # recompute each layer in the backward pass (only while the LM trains)
            self.model.activation_checkpointing_enable()

        cfg = self.model.config
        self.is_encoder_decoder = bool(cfg.is_encoder_decoder)
        self.dim = cfg.get_text_config().hidden_size if hasattr(cfg, "get_text_config") else cfg.hidden_size
        self.max_length = _context_size(cfg, tokenizer)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, L) -> (B, L, D)`` input embeddings (the encoder's, for seq2seq models)."""
        return self.model.get_input_embeddings()(input_ids)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Run on ``(B, L, D)`` embeddings; with ``labels`` (-100 = ignored) the output has ``loss``.

        Causal: labels align with ``inputs_embeds`` (shifted inside). Seq2seq: labels are
        the target sequence, decoder inputs derived from them unless given.
        """
        kwargs: dict[str, Any] = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask, "labels": labels}
        if position_ids is not None:  # packed rows restart positions at every sequence
            kwargs["position_ids"] = position_ids
        if self.is_encoder_decoder:
            kwargs.update(decoder_input_ids=decoder_input_ids, decoder_attention_mask=decoder_attention_mask)
        return self.model(**kwargs)

    @torch.no_grad()
    def generate(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, **generate_kwargs: Any) -> torch.Tensor:
        """Generate from ``(B, L, D)`` embeddings (left-padded); returns only the new tokens ``(B, T)``.

        ``generate_kwargs`` go to transformers' ``generate`` (``max_new_tokens``,
        ``do_sample``, ``num_beams``, ``use_cache``...).
        """
        out = self.model.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **generate_kwargs)
        if self.is_encoder_decoder:
            return out[:, 1:]  # drop the decoder start token
        return out  # decoder-only generate from embeddings returns only new tokens

    def save_pretrained(self, directory: str | Path) -> None:
        """Save model and tokenizer so ``LanguageModel(name_or_path=directory)`` restores both."""
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
