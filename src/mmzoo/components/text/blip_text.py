"""BLIP's text side with its three modes (the paper's multimodal mixture of encoder-decoder).

One BERT-style transformer, built from transformers' BLIP text classes, serves as

- the unimodal text encoder (``forward``; ITC): bidirectional self-attention, no image,
  pooled at the first token ([CLS]);
- the image-grounded text encoder (``encode_grounded``; ITM): the same, plus cross-attention
  to the image tokens in every layer; the first token becomes [ENC];
- the image-grounded text decoder (``decode``/``generate``; LM): causal self-attention plus
  cross-attention; the first token becomes [DEC].

As in the BLIP paper, the decoder shares every parameter with the encoder except its
self-attention layers: embeddings, cross-attention and feed-forward are the *same module
objects* in ``encoder`` (a ``BlipTextModel``) and ``decoder`` (a ``BlipTextLMHeadModel``,
whose LM head is tied to the shared word embeddings). The names are transformers'
(``BlipForImageTextRetrieval.text_encoder``, ``BlipForConditionalGeneration.text_decoder``).

Tokenisation stays in the data path: ids come in as ``tokenizer(caption)`` makes them (first
token [CLS]/BOS); the part swaps the first token for [ENC]/[DEC] itself. Those ids are the
tokenizer's ``[ENC]`` and ``[DEC]`` tokens when it has them (BLIP's BERT tokenizer: [DEC] is its
BOS); otherwise [DEC] is the BOS token and the grounded encoder keeps the first token as is.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipTextConfig,
    PreTrainedTokenizerBase,
)
from transformers.models.blip.modeling_blip_text import BlipTextLMHeadModel, BlipTextModel

from mmzoo.components.attention_masks import additive_mask, causal_mask
from mmzoo.components.text.base import TextEncoder
from mmzoo.components.tokenization import special_token_config
from mmzoo.types import TextFeatures

SHARED_LAYER_MODULES = ("crossattention", "intermediate", "output")  # all of a layer but "attention"


def share_all_but_self_attention(encoder: BlipTextModel, decoder: BlipTextLMHeadModel) -> None:
    """Make the decoder use the encoder's modules everywhere except self-attention (BLIP)."""
    decoder.bert.embeddings = encoder.embeddings
    for enc_layer, dec_layer in zip(encoder.encoder.layer, decoder.bert.encoder.layer, strict=True):
        for name in SHARED_LAYER_MODULES:
            setattr(dec_layer, name, getattr(enc_layer, name))
    decoder.cls.predictions.decoder.weight = encoder.embeddings.word_embeddings.weight  # re-tie the LM head


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int | None:
    return tokenizer.get_vocab().get(token)


def _pretrained(name_or_path: str) -> tuple[BlipTextConfig, nn.Module, str]:
    """Text config and the trained text module of a BLIP checkpoint: the retrieval model's
    encoder or the captioning model's decoder (which one: the returned attribute name)."""
    config = AutoConfig.from_pretrained(name_or_path)
    architecture = (config.architectures or [""])[0]
    if architecture == "BlipForConditionalGeneration":
        return config.text_config, BlipForConditionalGeneration.from_pretrained(name_or_path).text_decoder, "decoder"
    if architecture == "BlipForImageTextRetrieval":
        return config.text_config, BlipForImageTextRetrieval.from_pretrained(name_or_path).text_encoder, "encoder"
    raise ValueError(
        f"{name_or_path}: a BLIP text side loads from BlipForImageTextRetrieval or BlipForConditionalGeneration "
        f"checkpoints, this one is {architecture or 'of unknown architecture'}"
    )


class BlipText(TextEncoder):
    """BLIP's encoder / image-grounded encoder / image-grounded decoder over shared weights.

    Give ``name_or_path`` (a BLIP checkpoint: the retrieval model's text encoder or the
    captioning model's decoder; the parts they do not hold keep their random init) or
    ``config`` (a ``BlipTextConfig`` dict for a random one; ``tokenizer`` required).
    ``image_dim`` (the vision encoder's width, injected by the model) is what the
    cross-attention reads; a checkpoint of another width is an error.
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        config: dict[str, Any] | None = None,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        image_dim: int | None = None,
        max_length: int = 35,
    ) -> None:
        super().__init__()
        if (name_or_path is None) == (config is None):
            raise ValueError("give exactly one of name_or_path (pretrained) or config (random init)")
        if isinstance(tokenizer, str) or (tokenizer is None and name_or_path is not None):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer or name_or_path)
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to build a text side from a config")
        self.tokenizer = tokenizer

        source = None
        if name_or_path is not None:
            text_config, source, source_name = _pretrained(name_or_path)
        else:
            values = {**special_token_config(tokenizer), "max_position_embeddings": max_length, **config}
            if image_dim is not None:
                values["encoder_hidden_size"] = image_dim
            text_config = BlipTextConfig(**values)
        if image_dim is not None and text_config.encoder_hidden_size != image_dim:
            raise ValueError(
                f"the text side cross-attends to {text_config.encoder_hidden_size}-wide image tokens but the "
                f"vision encoder gives {image_dim}: use an encoder of that width or a text config with "
                f"encoder_hidden_size={image_dim}"
            )
        text_config.is_decoder = True  # every layer gets its cross-attention; the mode picks the mask

        self.encoder = BlipTextModel(text_config, add_pooling_layer=False)
        self.decoder = BlipTextLMHeadModel(text_config)
        share_all_but_self_attention(self.encoder, self.decoder)
        if source is not None:
            getattr(self, source_name).load_state_dict(source.state_dict())

        self.dim = text_config.hidden_size
        self.image_dim = text_config.encoder_hidden_size
        self.vocab_size = text_config.vocab_size
        self.max_length = min(max_length, text_config.max_position_embeddings)
        self.enc_token_id = _token_id(tokenizer, "[ENC]")
        dec = _token_id(tokenizer, "[DEC]")
        self.dec_token_id = dec if dec is not None else tokenizer.bos_token_id
        if self.dec_token_id is None:
            raise ValueError("the decoder needs a [DEC] or BOS token, and the tokenizer has neither")

    @staticmethod
    def _with_first(input_ids: torch.Tensor, token_id: int | None) -> torch.Tensor:
        if token_id is None:
            return input_ids
        ids = input_ids.clone()
        ids[:, 0] = token_id
        return ids

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextFeatures:
        """Unimodal encoder: ``(B, L), (B, L) -> TextFeatures(tokens (B, L, D), pooled (B, D))``."""
        tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, D)
        return TextFeatures(tokens=tokens, pooled=tokens[:, 0])

    def encode_grounded(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_tokens: torch.Tensor,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Image-grounded encoder: bidirectional text + cross-attention -> ``(B, L, D)``.

        image_tokens: (B, N, image_dim). BLIP's ITM reads position 0 ([ENC]).
        """
        return self.encoder(
            input_ids=self._with_first(input_ids, self.enc_token_id),
            attention_mask=attention_mask,
            encoder_hidden_states=image_tokens,
            encoder_attention_mask=image_mask,
        ).last_hidden_state

    def decode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_tokens: torch.Tensor,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Image-grounded decoder (training): ``(B, L)`` right-padded -> next-token logits ``(B, L, V)``."""
        dtype = self.encoder.embeddings.word_embeddings.weight.dtype
        bias = additive_mask(causal_mask(attention_mask), dtype)  # (B, 1, L, L), BLIP's decoder mask
        return self.decoder(
            input_ids=self._with_first(input_ids, self.dec_token_id),
            attention_mask=bias,
            encoder_hidden_states=image_tokens,
            encoder_attention_mask=image_mask,
            is_decoder=True,
            use_cache=False,
        ).logits

    @torch.no_grad()
    def generate(
        self,
        image_tokens: torch.Tensor,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """New token ids ``(B, T)`` continuing ``prompt_ids`` (B, P) given the image tokens.

        The prompt is the caption's start as the tokenizer makes it ([CLS]/BOS first, no
        trailing EOS/[SEP]; left-padded if lengths differ); greedy unless ``kwargs`` say
        otherwise (transformers' ``generate`` arguments).
        """
        ids = self._with_first(prompt_ids, self.dec_token_id)
        kwargs = {
            "eos_token_id": self.tokenizer.sep_token_id or self.tokenizer.eos_token_id,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": False,
            **kwargs,
        }
        out = self.decoder.generate(
            input_ids=ids,
            attention_mask=prompt_mask if prompt_mask is not None else torch.ones_like(ids),
            encoder_hidden_states=image_tokens,
            encoder_attention_mask=image_mask,
            **kwargs,
        )
        return out[:, ids.shape[1] :]
