"""Vision-to-LLM model: encoder -> bridge -> LLM input embeddings.

LLaVA, MiniGPT-4, BLIP-2 (stage 2) and InstructBLIP are this composition with other
parts and recipes. The prompt holds one ``<image>`` token per visual token (the collator
expands the placeholder); ``merge_visual_tokens`` scatters the bridge's output there
after checking the counts agree, as transformers' ``modeling_llava`` does. InstructBLIP's
instruction (ids from the Q-Former's own tokenizer) goes to the bridge beside the image.

Every entry point takes ``pixel_values`` or, in their place, ``features``: what the frozen
front of the model (``image_features``) made of them earlier, read from a feature cache
(``mmzoo.data.feature_cache``). ``feature_level`` says how far that front reaches: the
encoder's tokens, or the queries of a frozen Q-Former that reads no instruction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from mmzoo.components.encoders.base import VisionEncoder
from mmzoo.objectives.lm import lm_loss


class VLMOutput(NamedTuple):
    logits: torch.Tensor  # (B, L, V) for causal LLMs; (B, L_target, V) for encoder-decoders
    loss: torch.Tensor | None  # () mean cross-entropy over supervised tokens


def merge_visual_tokens(
    text_embeds: torch.Tensor, input_ids: torch.Tensor, visual: torch.Tensor, image_token_id: int
) -> torch.Tensor:
    """Put ``visual`` (B, M, D) where ``input_ids`` (B, L) holds the image token; M per row.

    A prompt with no (or a different number of) image positions is an error rather than a
    silent misalignment of image and text.
    """
    positions = input_ids == image_token_id  # (B, L)
    counts = positions.sum(dim=1)
    expected = visual.shape[1]
    if not bool((counts == expected).all()):
        raise ValueError(
            f"each prompt needs exactly {expected} image tokens (one <image> placeholder, expanded by the "
            f"collator), found {counts.tolist()}"
        )
    merged = text_embeds.clone()
    merged[positions] = visual.reshape(-1, visual.shape[-1]).to(merged.dtype)
    return merged


FEATURE_LEVELS = ("encoder", "qformer")


class VisionLanguageModel(nn.Module):
    """``forward(pixel_values, input_ids, attention_mask, labels) -> VLMOutput``; ``generate``.

    ``instruction_aware``: the bridge's Q-Former reads the instruction (InstructBLIP), so
    its output cannot be precomputed per image even when it is frozen.
    """

    def __init__(
        self,
        encoder: VisionEncoder,
        bridge: Callable[..., nn.Module],
        llm: nn.Module,
        image_token_id: int,
        instruction_aware: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.bridge = bridge(in_dim=encoder.dim, out_dim=llm.dim)
        self.llm = llm
        self.image_token_id = image_token_id
        self.instruction_aware = instruction_aware

    @property
    def num_image_tokens(self) -> int:
        return int(self.bridge.num_output_tokens(self.encoder.num_tokens))

    # ---- the frozen front, and features in place of pixels -------------------------------
    @property
    def feature_level(self) -> str:
        """What ``features`` are: ``"qformer"`` queries when the bridge's Q-Former is frozen and
        reads no instruction (MiniGPT-4), else ``"encoder"`` tokens."""
        qformer = getattr(self.bridge, "qformer", None)
        frozen = qformer is not None and getattr(self.bridge, "frozen", False)
        return "qformer" if frozen and not self.instruction_aware else "encoder"

    def feature_shape(self) -> tuple[int, int]:
        """``(tokens, dim)`` of one image's features at ``feature_level``."""
        if self.feature_level == "qformer":
            return int(self.bridge.qformer.num_queries), int(self.bridge.qformer.dim)
        return int(self.encoder.num_tokens), int(self.encoder.dim)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, D) at ``feature_level``: what a feature cache stores."""
        tokens = self.encoder(pixel_values)  # (B, N, D_v)
        if self.feature_level == "qformer":
            return self.bridge.qformer(tokens)  # (B, Q, H)
        return tokens

    def _check_features(self, features: torch.Tensor) -> None:
        expected = self.feature_shape()
        if features.dim() != 3 or tuple(features.shape[1:]) != expected:
            raise ValueError(
                f"features of shape {tuple(features.shape)}, expected (B, {expected[0]}, {expected[1]}) at "
                f"feature_level={self.feature_level!r}: they were made by another encoder or bridge. Rebuild the "
                "feature cache (it is keyed by the frozen parts' weights) or train from pixels (data.feature_cache=false)"
            )

    def visual_embeds(
        self,
        pixel_values: torch.Tensor | None,
        instruction_ids: torch.Tensor | None = None,
        instruction_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, M, D_llm) from pixels or precomputed ``features``; ``instruction_*`` (B, T) reach an
        instruction-aware Q-Former (InstructBLIP)."""
        if (pixel_values is None) == (features is None):
            raise ValueError("give pixel_values or features (precomputed by image_features), exactly one")
        if features is not None:
            self._check_features(features)
            if self.feature_level == "qformer":  # the frozen Q-Former already ran
                return self.bridge.projector(features)  # (B, M, D_llm)
            tokens = features  # (B, N, D_v)
        else:
            tokens = self.encoder(pixel_values)  # (B, N, D_v)
        if instruction_ids is None:
            return self.bridge(tokens)  # (B, M, D_llm)
        return self.bridge(tokens, instruction_ids=instruction_ids, instruction_mask=instruction_mask)

    def embed(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        instruction_ids: torch.Tensor | None = None,
        instruction_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """LLM input embeddings (B, L, D) with the visual tokens in place."""
        ids = input_ids.masked_fill(input_ids == self.image_token_id, 0)  # placeholder rows are replaced
        text = self.llm.embed(ids)  # (B, L, D)
        visual = self.visual_embeds(pixel_values, instruction_ids, instruction_mask, features)
        return merge_visual_tokens(text, input_ids, visual, self.image_token_id)

    def forward(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        instruction_ids: torch.Tensor | None = None,
        instruction_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> VLMOutput:
        embeds = self.embed(pixel_values, input_ids, instruction_ids, instruction_mask, features)
        if getattr(self.llm, "is_encoder_decoder", False):
            out = self.llm(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)
            return VLMOutput(out.logits, out.loss)
        logits = self.llm(inputs_embeds=embeds, attention_mask=attention_mask).logits  # (B, L, V)
        return VLMOutput(logits, lm_loss(logits, labels) if labels is not None else None)

    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor | None,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        instruction_ids: torch.Tensor | None = None,
        instruction_mask: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """New token ids (B, T) continuing left-padded prompts that hold the image tokens.

        ``kwargs`` go to transformers' ``generate`` (batched, KV cache): ``max_new_tokens``,
        ``eos_token_id`` (one id or a list), ``stopping_criteria`` (per sequence), sampling...
        """
        embeds = self.embed(pixel_values, input_ids, instruction_ids, instruction_mask, features)
        return self.llm.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
