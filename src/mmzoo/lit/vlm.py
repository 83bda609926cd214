"""The vision-to-LLM LightningModule shared by LLaVA and MiniGPT-4 (and BLIP-2 stage 2,
InstructBLIP): prompt-masked LM training and generation; evaluation is the configured
evaluators (``conf/evaluation/generative.yaml``: captioning, VQA, blind baselines).

Recipes differ only in data: which parts are frozen (``freeze``), which template, which
tasks are sampled, whether LoRA adapts the LLM. Those are config, so each paper is a
YAML file in ``conf/model`` and ``conf/experiment``, not a subclass.

Two things make it cheap to run. Training batches may carry ``features`` (the frozen
encoder's, or frozen Q-Former's, output read from a feature cache, ``data.feature_cache``)
in place of ``pixel_values``; ``feature_source`` says what may be cached and refuses when
a part it would cache trains. Generation stops each sequence at the template's end-of-turn
marker while decoding (``EndOfTurn``, a transformers stopping criterion), batched and with
the KV cache, instead of generating to ``max_new_tokens`` and cutting afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from torch import nn
from transformers import StoppingCriteria, StoppingCriteriaList

from mmzoo.data.conversation import VLMCollator, task_weights
from mmzoo.data.feature_cache import FeatureCacheError, FeatureSource
from mmzoo.data.templates import HUMAN, IMAGE_PLACEHOLDER, ConversationTemplate
from mmzoo.eval.base import Evaluation
from mmzoo.lit.base import ZooModule, weights_hash
from mmzoo.models.vision_language import VisionLanguageModel
from mmzoo.types import ATTENTION_MASK, FEATURES, INPUT_IDS, LABELS, PIXEL_VALUES

log = logging.getLogger(__name__)


def apply_lora(llm: nn.Module, lora: Mapping[str, Any]) -> None:
    """Wrap the LLM's transformers model with peft LoRA adapters (only they train)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.get("r", 8),
        lora_alpha=lora.get("alpha", 16),
        lora_dropout=lora.get("dropout", 0.05),
        target_modules=list(lora.get("target_modules", ["q_proj", "v_proj"])),
        task_type="SEQ_2_SEQ_LM" if getattr(llm, "is_encoder_decoder", False) else "CAUSAL_LM",
    )
    llm.model = get_peft_model(llm.model, config)


class VisionLanguageModule(ZooModule):
    """``freeze`` lists the parts the recipe keeps fixed (default: encoder and LLM, as in
    LLaVA stage 1 and MiniGPT-4); a bridge may keep its own Q-Former frozen."""

    def __init__(
        self,
        encoder: nn.Module,
        bridge: Callable[..., nn.Module],
        llm: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        template: ConversationTemplate,
        tasks: Mapping[str, float] | Sequence[str],
        instructions: Mapping[str, Sequence[str]],
        scheduler: Callable[..., Any] | None = None,
        freeze: Sequence[str] = ("encoder", "llm"),
        max_length: int = 256,
        lora: Mapping[str, Any] | None = None,
        generation: Mapping[str, Any] | None = None,
        notes: Sequence[str] = (),
        pretrained_parts: Mapping[str, Any] | None = None,
        evaluation: Evaluation | None = None,
        held_out: Sequence[str] = (),
        instruction_aware: bool = False,
    ) -> None:
        image_token_id = llm.tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
        model = VisionLanguageModel(encoder, bridge, llm, image_token_id=image_token_id,
                                    instruction_aware=instruction_aware)
        if lora:
            apply_lora(llm, lora)
        super().__init__(model, optimizer, scheduler, freeze, pretrained_parts, evaluation)
        self.template = template
        self.tasks = task_weights(tasks)
        self.instructions = {k: list(v) for k, v in instructions.items()}
        self.max_length = max_length
        self.generation = {"max_new_tokens": 32, "do_sample": False, "num_beams": 1} | dict(generation or {})
        self.held_out = tuple(held_out)
        qformer = getattr(self.model.bridge, "qformer", None)
        if instruction_aware and (qformer is None or not qformer.has_text):
            raise ValueError(
                "instruction_aware=true needs a Q-Former with its own text side: set bridge.qformer.tokenizer "
                "(InstructBLIP's instruction-aware Q-Former), or instruction_aware=false"
            )
        self.instruction_aware = instruction_aware
        self.notes = list(notes)
        for note in self.notes:
            log.warning(note)
        self.counters["truncated_sequences"] = 0
        self.counters["task_fallbacks"] = 0  # samples without a configured task's data (caption-only data)
        self._feature_memo: tuple[torch.Tensor, int | None, torch.Tensor] | None = None

    # ---- data path ------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self.model.llm.tokenizer

    def image_transform(self) -> Callable:
        from mmzoo.data.webdata import image_transform

        enc = self.model.encoder
        return image_transform(enc.image_size, enc.mean, enc.std)

    def image_stats(self) -> tuple[Sequence[float], Sequence[float]]:
        return self.model.encoder.mean, self.model.encoder.std

    def collator(self, train: bool = True) -> VLMCollator:
        return VLMCollator(
            self.tokenizer,
            self.template,
            num_image_tokens=self.model.num_image_tokens,
            max_length=self.max_length,
            tasks=self.tasks,
            instructions=self.instructions,
            is_encoder_decoder=getattr(self.model.llm, "is_encoder_decoder", False),
            mode="train" if train else "eval",
            held_out=self.held_out,
            instruction_tokenizer=self.model.bridge.qformer.tokenizer if self.instruction_aware else None,
            instruction_max_length=self.model.bridge.qformer.max_text_length if self.instruction_aware else 0,
        )

    def feature_source(self) -> FeatureSource:
        """What ``data.feature_cache=true`` precomputes: the frozen encoder's tokens, or the
        queries of a frozen Q-Former after it (MiniGPT-4). A trainable Q-Former (BLIP-2 stage 2,
        ``bridge.frozen=false``) or an instruction-aware one keeps running every step on the
        cached encoder tokens; a trainable encoder leaves nothing to cache."""
        if "encoder" not in self.frozen_names:
            raise FeatureCacheError(
                f"data.feature_cache=true needs a frozen encoder, and this recipe trains it (model.freeze="
                f"{self.frozen_names}): its features change every step. Freeze it (model.freeze=[encoder, ...]) "
                "or set data.feature_cache=false"
            )
        parts = {"encoder": self.model.encoder}
        if self.model.feature_level == "qformer":
            parts["bridge.qformer"] = self.model.bridge.qformer
        for name, part in parts.items():
            trainable = [n for n, p in part.named_parameters() if p.requires_grad]
            if trainable:
                raise FeatureCacheError(
                    f"data.feature_cache=true would cache the output of {name}, but its parameters {trainable[:3]} "
                    "train: freeze the part or set data.feature_cache=false"
                )
        weights = {name: weights_hash(part) for name, part in parts.items()}
        return FeatureSource(self.model.feature_level, parts, self.model.image_features, self.model.feature_shape(),
                             weights)

    # ---- training -------------------------------------------------------------------
    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self.model(batch.get(PIXEL_VALUES), batch[INPUT_IDS], batch[ATTENTION_MASK], batch[LABELS],
                         batch.get("instruction_ids"), batch.get("instruction_mask"), features=batch.get(FEATURES))
        if self.training and batch.get("num_truncated"):  # sequences cut at max_length (counted, reported)
            self.counters["truncated_sequences"] += int(batch["num_truncated"])
        if self.training and batch.get("num_task_fallbacks"):  # counted in the collator, reported
            self.counters["task_fallbacks"] += int(batch["num_task_fallbacks"])
        return out.loss, {}

    # ---- generation -----------------------------------------------------------------
    def decode(self, ids: torch.Tensor) -> list[str]:
        """Generated ids -> text, cut where the template's end-of-turn marker starts.

        The cut is made on token ids, not text: a marker such as ``###`` may decode with
        spaces between its pieces, depending on the tokenizer.
        """
        marker_ids = self.end_of_turn_ids()
        rows = [cut_at(row.tolist(), marker_ids) for row in ids]
        return [t.strip() for t in self.tokenizer.batch_decode(rows, skip_special_tokens=True)]

    def end_of_turn_ids(self) -> list[int]:
        """The template's end-of-turn marker as token ids (``[]`` when it has none)."""
        marker = self.template.end_of_turn
        return self.tokenizer(marker, add_special_tokens=False)["input_ids"] if marker else []

    def stop_options(self) -> dict[str, Any]:
        """``generate`` options that end each sequence at the end-of-turn marker while decoding.

        A one-token marker (``</s>``) joins the eos ids; a longer one (MiniGPT-4's ``###``, three
        tokens for a word-level tokenizer) is an ``EndOfTurn`` stopping criterion. Either way a
        finished row only receives padding while the others go on, and ``generate`` returns
        when every row has finished.
        """
        marker = self.end_of_turn_ids()
        eos = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        if len(marker) == 1:
            return {"eos_token_id": sorted({*eos, *marker})}
        options: dict[str, Any] = {"eos_token_id": eos or None}
        if marker:
            options["stopping_criteria"] = StoppingCriteriaList([EndOfTurn(marker)])
        return options

    def generate_options(self, **kwargs: Any) -> dict[str, Any]:
        """transformers ``generate`` options: stop at the marker, then the recipe's, then ``kwargs``."""
        return {"pad_token_id": self.tokenizer.pad_token_id} | self.stop_options() | self.generation | kwargs

    def _generate_ids(
        self,
        pixel_values: torch.Tensor | None,
        prompt: Mapping[str, torch.Tensor],
        features: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        instructions = {k: prompt[k].to(self.device) for k in ("instruction_ids", "instruction_mask") if k in prompt}
        return self.model.generate(
            pixel_values.to(self.device) if pixel_values is not None else None,
            prompt[INPUT_IDS].to(self.device),
            prompt[ATTENTION_MASK].to(self.device),
            **instructions,
            features=features,
            **self.generate_options(**kwargs),
        )

    @torch.no_grad()
    def generate(
        self,
        images: Sequence[Image.Image] | torch.Tensor,
        prompts: str | Sequence[str] | Sequence[Sequence[Mapping[str, str]]],
        **generate_kwargs: Any,
    ) -> list[str]:
        """Answer ``prompts`` about ``images`` (batched; KV cache, greedy or sampling via
        transformers' ``generate`` kwargs such as ``do_sample=True, temperature=0.7``).

        A prompt is a user message (``<image>`` is prepended when missing) or a whole
        conversation (list of ``{"from", "value"}`` turns ending with a user turn).
        """
        was_training = self.training
        self.eval()
        if isinstance(images, torch.Tensor):
            pixel_values = images if images.dim() == 4 else images[None]
        else:
            transform = self.image_transform()
            pixel_values = torch.stack([transform(im.convert("RGB")) for im in images])
        if isinstance(prompts, str):
            prompts = [prompts] * pixel_values.shape[0]
        conversations = [p if not isinstance(p, str) else [_user_turn(p)] for p in prompts]
        if len(conversations) != pixel_values.shape[0]:
            raise ValueError(f"{len(conversations)} prompts for {pixel_values.shape[0]} images")
        batch = self.collator(train=False).prompts(conversations)
        texts = self.decode(self._generate_ids(pixel_values, batch, **generate_kwargs))
        self.train(was_training)
        return texts

    # ---- what the evaluators ask for ------------------------------------------------
    def generate_text(self, pixel_values: torch.Tensor, prompt: Mapping[str, torch.Tensor]) -> list[str]:
        """Texts generated for a collated prompt batch (the eval collator's ``caption_prompt``...).

        The images' features are computed once for all the prompt batches asked about the same
        ``pixel_values`` tensor (captions and questions of one test batch and condition).
        """
        return self.decode(self._generate_ids(None, prompt, features=self._features_of(pixel_values)))

    @torch.no_grad()
    def _features_of(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``image_features`` of ``pixel_values``, remembered for that very tensor object (held, so
        its id cannot be reused) until another one is asked about, or it changes in place (seen
        by its version counter; inference-mode tensors, as in Lightning's test loop, have none)."""
        version = None if pixel_values.is_inference() else pixel_values._version
        memo = self._feature_memo
        if memo is None or memo[0] is not pixel_values or memo[1] != version:
            features = self.model.image_features(pixel_values.to(self.device))  # (B, N, D)
            self._feature_memo = memo = (pixel_values, version, features)
        return memo[2]

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._feature_memo = None


class EndOfTurn(StoppingCriteria):
    """Per sequence: done once its newest tokens are ``marker`` (token ids)."""

    def __init__(self, marker: Sequence[int]) -> None:
        if not marker:
            raise ValueError("an empty end-of-turn marker never matches")
        self.marker = torch.tensor(list(marker), dtype=torch.long)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """(B, T) ids so far (for generation from embeddings: only the new ones) -> (B,) bool."""
        k = self.marker.numel()
        if input_ids.shape[1] < k:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return (input_ids[:, -k:] == self.marker.to(input_ids.device)).all(dim=1)


def cut_at(ids: list[int], marker: list[int]) -> list[int]:
    """``ids`` up to the first occurrence of the ``marker`` sequence (all of it if absent)."""
    if not marker:
        return ids
    for i in range(len(ids) - len(marker) + 1):
        if ids[i : i + len(marker)] == marker:
            return ids[:i]
    return ids


def _user_turn(text: str) -> dict[str, str]:
    value = text if IMAGE_PLACEHOLDER in text else f"{IMAGE_PLACEHOLDER}\n{text}"
    return {"from": HUMAN, "value": value}
