"""What the image-text families share: CLIP, BLIP and BLIP-2 stage 1.

Each embeds images and texts into one space (``model.encode_image`` / ``encode_text``) and
is evaluated by retrieval and zero-shot classification; BLIP and BLIP-2 also match pairs
(``model.itm_scores``: retrieval re-ranks its top k by it) and BLIP captions. This base
gives the evaluators what they ask for (see ``mmzoo.eval``) and the data path its
collator; a family adds its ``loss``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from mmzoo.data.captions import CaptionCollator
from mmzoo.lit.base import ZooModule
from mmzoo.objectives.itc import pairwise_similarity
from mmzoo.types import ATTENTION_MASK, INPUT_IDS, PIXEL_VALUES

ITM_CHUNK = 256  # pairs per ITM forward during re-ranking


class ContrastiveModule(ZooModule):
    """Image/text embeddings for retrieval and zero-shot, pair matching for re-ranking.

    Subclasses say where the text side's tokenizer lives (``text_tokenizer``,
    ``text_max_length``) and implement ``loss``. ``group_key``: the record field whose equal
    values make pairs interchangeable (passed to the losses as ``groups``).
    """

    group_key: str | None = None
    caption_prompt: str | None = None  # set by families that caption (BLIP)

    # ---- data path ------------------------------------------------------------------
    @property
    def text_tokenizer(self) -> Any:
        return self.model.text.tokenizer

    @property
    def text_max_length(self) -> int:
        return int(self.model.text.max_length)

    def image_transform(self) -> Callable:
        from mmzoo.data.webdata import image_transform

        enc = self.model.encoder
        return image_transform(enc.image_size, enc.mean, enc.std)

    def image_stats(self) -> tuple[Sequence[float], Sequence[float]]:
        return self.model.encoder.mean, self.model.encoder.std

    def collator(self, train: bool = True) -> CaptionCollator:
        prompt = None if train else self.caption_prompt
        return CaptionCollator(self.text_tokenizer, self.text_max_length, self.group_key, prompt)

    # ---- what the evaluators ask for ------------------------------------------------
    @property
    def matches_pairs(self) -> bool:
        return hasattr(self.model, "itm_scores")

    def retrieval_features(self, batch: Mapping[str, Any], texts: bool = True) -> dict[str, torch.Tensor]:
        """Per-sample features: ``image`` (B, E) or (B, Q, E), ``text`` (B, E), normalised;
        for models that match pairs also the image tokens and text ids re-ranking needs."""
        if not self.matches_pairs:
            out = {"image": self.model.encode_image(batch[PIXEL_VALUES])}
            if texts:
                out["text"] = self.model.encode_text(batch[INPUT_IDS], batch[ATTENTION_MASK])
            return out
        image_tokens = self.model.encoder(batch[PIXEL_VALUES])  # (B, N, D), kept for re-ranking
        out = {"image": self.model.image_features(image_tokens)}
        if texts:
            out |= {
                "text": self.model.encode_text(batch[INPUT_IDS], batch[ATTENTION_MASK]),
                "itm_image": image_tokens, "itm_ids": batch[INPUT_IDS], "itm_mask": batch[ATTENTION_MASK],
            }
        return out

    def similarity(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """``(N_i, E)`` or ``(N_i, Q, E)`` against ``(N_t, E)`` -> ``(N_t, N_i)`` (BLIP-2: best query)."""
        return pairwise_similarity(images.float(), texts.float()).T

    @torch.no_grad()
    def embed_texts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings ``(P, E)`` of raw strings (zero-shot class prompts)."""
        tokens = self.text_tokenizer(list(prompts), padding=True, truncation=True, max_length=self.text_max_length,
                                     return_tensors="pt").to(self.device)
        return self.model.encode_text(tokens["input_ids"], tokens["attention_mask"])

    @torch.no_grad()
    def itm_scores(self, features: Mapping[str, list[torch.Tensor]], images: list[int], texts: list[int]) -> torch.Tensor:
        """Match scores ``(K,)`` of the pairs (images[k], texts[k]) from stored per-sample features."""
        pad = self.text_tokenizer.pad_token_id or 0
        scores = []
        for start in range(0, len(images), ITM_CHUNK):
            i_idx, t_idx = images[start : start + ITM_CHUNK], texts[start : start + ITM_CHUNK]
            image_tokens = torch.stack([features["itm_image"][i] for i in i_idx]).to(self.device)  # (K, N, D)
            ids = [features["itm_ids"][t][features["itm_mask"][t].bool()] for t in t_idx]
            input_ids = pad_sequence(ids, batch_first=True, padding_value=pad).to(self.device)  # (K, L)
            mask = pad_sequence([torch.ones_like(i) for i in ids], batch_first=True).to(self.device)
            scores.append(self.model.itm_scores(image_tokens, input_ids, mask).float().cpu())
        return torch.cat(scores)
