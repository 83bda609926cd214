"""BLIP-2 stage 1 (Li et al. 2023): a Q-Former learns to read a frozen image encoder.

``Blip2Stage1`` composes a (frozen, by recipe) vision encoder with a ``Bridge`` whose
Q-Former has a text side, and the heads stage 1 trains. One ``forward`` computes BLIP-2's
three losses, each through the same Q-Former under its own attention mask:

- ITC (unimodal): query outputs, projected by the bridge's projector (BLIP-2's
  ``vision_projection``), against the text's [CLS] output through ``text_projection``; a
  pair scores its best query;
- ITM (bidirectional): queries and text attend to each other; ``itm_head`` averaged over
  the query outputs; hard negatives mined from the ITC similarities;
- ITG (multimodal causal): the text, its first token replaced by [DEC], is generated from
  the queries through ``lm_head`` (BERT's LM head over the Q-Former's word embeddings).

The Q-Former sits at ``bridge.qformer``, the path it has in ``VisionLanguageModel``, so
stage 2, InstructBLIP and MiniGPT-4 take a stage-1 run's ``bridge.qformer.*`` weights by
name (``init_from_runs: {bridge: {qformer: <run>}}``), bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Blip2QFormerConfig
from transformers.models.bert.modeling_bert import BertPredictionHeadTransform

from mmzoo.components.bridges.bridge import Bridge
from mmzoo.components.encoders.base import VisionEncoder
from mmzoo.objectives.itc import contrastive_logits, itc_loss_from_logits
from mmzoo.objectives.itm import gather_itm_inputs, itm_loss, itm_pairs, mine_hard_negatives
from mmzoo.objectives.lm import decoder_targets, lm_loss


class QFormerLMHead(nn.Module):
    """BERT's LM head: dense, activation, LayerNorm, then the word embeddings transposed + bias.

    The output matrix is *read* from the Q-Former's word embeddings at call time rather than
    tied as a second parameter name, so the Q-Former's weights stay self-contained under
    ``bridge.qformer.*`` (BLIP-2 ties them; the computation is the same).
    """

    def __init__(self, config: Blip2QFormerConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, T, H)``, embeddings ``(V, H)`` -> logits ``(B, T, V)``."""
        return F.linear(self.transform(hidden), word_embeddings, self.bias)


class Blip2Stage1Output(NamedTuple):
    loss: torch.Tensor  # () loss_itc + loss_itm + loss_itg
    loss_itc: torch.Tensor  # ()
    loss_itm: torch.Tensor  # ()
    loss_itg: torch.Tensor  # ()
    image_embeds: torch.Tensor  # (B, Q, E) L2-normalised query features
    text_embeds: torch.Tensor  # (B, E) L2-normalised
    logit_scale: torch.Tensor  # ()
    itm_logits: torch.Tensor  # (3B, 2)
    itm_labels: torch.Tensor  # (3B,)


class Blip2Stage1(nn.Module):
    """``forward(pixel_values, input_ids, attention_mask, groups=None) -> Blip2Stage1Output``.

    ``bridge`` is a partial ``Bridge`` with a ``qformer`` that has a text side (a
    ``tokenizer``); it is built with ``in_dim`` from the encoder and ``out_dim=embed_dim``.
    ``input_ids`` come from ``self.tokenizer`` (the Q-Former's), right-padded.
    """

    def __init__(
        self,
        encoder: VisionEncoder,
        bridge: Callable[..., Bridge],
        embed_dim: int = 256,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        label_smoothing: float = 0.1,
        dec_token_id: int | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.bridge = bridge(in_dim=encoder.dim, out_dim=embed_dim)
        qformer = self.bridge.qformer
        if qformer is None:
            raise ValueError("BLIP-2 stage 1 trains a Q-Former, and this bridge has none: use bridge=qformer")
        if not qformer.has_text:
            raise ValueError(
                "BLIP-2 stage 1 feeds text through the Q-Former, which was built without a text side: "
                "set bridge.qformer.tokenizer (the Q-Former's own tokenizer)"
            )
        if self.bridge.frozen:
            raise ValueError("BLIP-2 stage 1 trains the Q-Former: set bridge.frozen=false")
        self.text_projection = nn.Linear(qformer.dim, embed_dim)
        self.itm_head = nn.Linear(qformer.dim, 2)
        self.lm_head = QFormerLMHead(qformer.config)
        # shape (1,), not (): FSDP cannot shard scalar parameters (open_clip's nonscalar_logit_scale)
        self.logit_scale = nn.Parameter(torch.full((1,), math.log(1 / init_temperature)))
        self.max_logit_scale = max_logit_scale
        self.label_smoothing = label_smoothing
        self.embed_dim = embed_dim
        self.dec_token_id = dec_token_id if dec_token_id is not None else self._dec_token_id(qformer.tokenizer)

    @staticmethod
    def _dec_token_id(tokenizer: Any) -> int:
        """[DEC] when the tokenizer has it (BLIP-2's BERT tokenizer: its BOS), else BOS."""
        token_id = None if tokenizer is None else tokenizer.get_vocab().get("[DEC]", tokenizer.bos_token_id)
        if token_id is None:
            raise ValueError("ITG needs a [DEC]/BOS token id: give the Q-Former a tokenizer with one, or dec_token_id")
        return token_id

    @property
    def qformer(self) -> Any:
        return self.bridge.qformer

    @property
    def tokenizer(self) -> Any:
        return self.bridge.qformer.tokenizer

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.max_logit_scale).squeeze(0)  # ()

    # ---- features (retrieval) -----------------------------------------------------------
    def image_features(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, D_v)`` -> ``(B, Q, E)`` normalised query features (score pairs by their max)."""
        return F.normalize(self.bridge(image_tokens), dim=-1)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image_features(self.encoder(pixel_values))  # (B, Q, E)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        cls = self.qformer.encode_text(input_ids, attention_mask)[:, 0]  # (B, H)
        return F.normalize(self.text_projection(cls), dim=-1)  # (B, E)

    # ---- matching and generation heads ----------------------------------------------------
    def itm_logits(
        self, image_tokens: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Row-aligned pairs -> (B, 2): the classifier averaged over the query outputs."""
        out = self.qformer.encode_pair(image_tokens, input_ids, attention_mask, "bidirectional")
        return self.itm_head(out[:, : self.qformer.num_queries]).mean(dim=1)  # (B, 2)

    def itm_scores(
        self, image_tokens: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B,) match logit of each row-aligned pair (re-ranking)."""
        return self.itm_logits(image_tokens, input_ids, attention_mask)[:, 1]

    def itg_logits(
        self, image_tokens: torch.Tensor, decoder_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Text positions' next-token logits (B, T, V) under the multimodal causal mask."""
        out = self.qformer.encode_pair(image_tokens, decoder_ids, attention_mask, "multimodal_causal")
        text = out[:, self.qformer.num_queries :]  # (B, T, H)
        return self.lm_head(text, self.qformer.embeddings.word_embeddings.weight)

    # ---- training ---------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        groups: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Blip2Stage1Output:
        image_tokens = self.encoder(pixel_values)  # (B, N, D_v)
        image_embeds = self.image_features(image_tokens)  # (B, Q, E)
        text_embeds = self.encode_text(input_ids, attention_mask)  # (B, E)
        scale = self.scale()
        logits = contrastive_logits(image_embeds, text_embeds, scale)
        loss_itc = itc_loss_from_logits(logits, groups, self.label_smoothing)

        negatives = mine_hard_negatives(logits.per_image, logits.per_text, groups, generator, logits.positive_index)
        pairs = itm_pairs(negatives)
        pad = self.tokenizer.pad_token_id if self.tokenizer is not None else self.qformer.config.pad_token_id
        images, ids, mask = gather_itm_inputs(
            pairs, image_tokens, input_ids, attention_mask, self.qformer.max_text_length, pad or 0
        )
        itm_logits = self.itm_logits(images, ids, mask)  # (3B, 2)
        loss_itm = itm_loss(itm_logits, pairs.labels)

        decoder_ids, labels = decoder_targets(input_ids, attention_mask, self.dec_token_id)
        loss_itg = lm_loss(self.itg_logits(image_tokens, decoder_ids, attention_mask), labels, self.label_smoothing)

        return Blip2Stage1Output(
            loss_itc + loss_itm + loss_itg, loss_itc, loss_itm, loss_itg,
            image_embeds, text_embeds, scale, itm_logits, pairs.labels,
        )
