"""From samples to token tensors for vision-to-LLM models: tasks, masks, padding.

Tokenisation lives here, in the data path (loader workers), never in ``forward``.
A sample becomes a conversation according to a *task* (caption, detailed description,
the sample's own multi-turn conversation, or one VQA pair), the template renders it
into supervised / unsupervised segments, and each segment is tokenised on its own so
the label mask is exact token by token. The single ``<image>`` token is expanded to as
many positions as the bridge outputs visual tokens; the model scatters them there.

Data offers what it offers: a sample lacking a task's field (a folder of captioned images
has no descriptions, conversations or Q&A) trains on the configured tasks it has, and on
its caption when it has none of them; such samples are counted (``num_task_fallbacks``)
and logged once, never an error, so one recipe runs on the embedded data and on captions.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mmzoo.data.shapes import QA_TYPES, question_type
from mmzoo.data.templates import ASSISTANT, HUMAN, IMAGE_PLACEHOLDER, ConversationTemplate, Turn
from mmzoo.types import (
    ATTENTION_MASK,
    CAPTIONS,
    FEATURES,
    IGNORE_INDEX,
    INPUT_IDS,
    LABELS,
    META,
    PIXEL_VALUES,
)

log = logging.getLogger(__name__)

# ``vqa``: one of the image's questions; ``vqa_turns``: all of them, one turn each (LLaVA-1.5
# turns VQAv2 and GQA into such multi-turn conversations: more answers per image seen)
TASKS = ("caption", "describe", "conversation", "vqa", "vqa_turns")
# the record field each task needs (``caption`` needs only the caption every sample has)
TASK_FIELDS = {"describe": "description", "conversation": "conversation", "vqa": "qa", "vqa_turns": "qa"}
SQRT_MIX = "sqrt"  # InstructBLIP's mix: each task in proportion to the square root of its size
# the tasks that mix weighs (``sqrt_weights``): an image's questions count once, as ``vqa``
SQRT_TASKS = ("caption", "describe", "conversation", "vqa")
QUESTION_TYPES = QA_TYPES


def task_weights(tasks: Mapping[str, float] | Sequence[str] | str) -> dict[str, float]:
    """``[caption, caption, vqa]`` or ``{caption: 2, vqa: 1}`` -> ``{caption: 2.0, vqa: 1.0}``;
    ``"sqrt"`` -> every task, weighted per sample by the square root of its size there.

    Configs use the list form: Hydra merges dicts key by key, so an experiment could not
    *replace* a model's task mix with a dict, while a list replaces it whole."""
    if tasks == SQRT_MIX:  # weights come from each sample's contents (``sqrt_weights``)
        return {name: float("nan") for name in SQRT_TASKS}
    if isinstance(tasks, Mapping):
        return {k: float(v) for k, v in tasks.items()}
    weights: dict[str, float] = {}
    for name in tasks:
        weights[name] = weights.get(name, 0.0) + 1.0
    return weights


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def expand_image_token(ids: list[int], image_token_id: int, num_image_tokens: int) -> list[int]:
    out: list[int] = []
    for i in ids:
        out.extend([i] * num_image_tokens if i == image_token_id else [i])
    return out


def encode_segments(
    tokenizer: Any,
    segments: Sequence[tuple[str, bool]],
    image_token_id: int | None,
    num_image_tokens: int,
    max_length: int,
) -> Encoded:
    """Token ids and labels (``IGNORE_INDEX`` where unsupervised) for rendered segments.

    A sequence longer than ``max_length`` is cut at the end and marked ``truncated`` (the
    caller counts it); one whose visual tokens would not fit is an error, not a cut.
    """
    input_ids: list[int] = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    labels: list[int] = [IGNORE_INDEX] * len(input_ids)
    for text, supervised in segments:
        ids = _ids(tokenizer, text)
        if image_token_id is not None:
            ids = expand_image_token(ids, image_token_id, num_image_tokens)
        input_ids += ids
        labels += ids if supervised else [IGNORE_INDEX] * len(ids)
    truncated = len(input_ids) > max_length
    if truncated:
        if image_token_id is not None and image_token_id in input_ids[max_length:]:
            raise ValueError(
                f"max_length={max_length} cannot hold the {num_image_tokens} visual tokens and the prompt; "
                "raise the model's max_length or use a bridge with fewer output tokens"
            )
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return Encoded(input_ids, labels, truncated)


def pad(sequences: Sequence[Sequence[int]], value: int, side: str = "right") -> torch.Tensor:
    """(B, L_max) long tensor, padded on ``side``."""
    width = max(len(s) for s in sequences)
    rows = [
        [*s, *[value] * (width - len(s))] if side == "right" else [*[value] * (width - len(s)), *s]
        for s in sequences
    ]
    return torch.tensor(rows, dtype=torch.long)


class VLMCollator:
    """Samples -> a batch for training (``mode='train'``) or for generation (``mode='eval'``).

    ``tasks`` lists task names (``TASKS``) sampled uniformly (a repeated name weighs more),
    maps them to sampling weights, or is ``"sqrt"``: each task the sample offers (one
    caption, description, conversation; its questions) weighted by the square root of its
    size, InstructBLIP's rule for mixing datasets, applied per sample. ``instructions`` maps
    'caption' / 'describe' to the instruction lists one is sampled from. ``held_out`` question
    types (``QUESTION_TYPES``) are never trained on, so evaluation can report them as unseen
    tasks. With ``instruction_tokenizer`` (an instruction-aware Q-Former's own, InstructBLIP)
    the first user turn's text is also tokenised for the bridge as ``instruction_ids``.
    """

    def __init__(
        self,
        tokenizer: Any,
        template: ConversationTemplate,
        num_image_tokens: int,
        max_length: int,
        tasks: Mapping[str, float] | Sequence[str],
        instructions: Mapping[str, Sequence[str]],
        is_encoder_decoder: bool = False,
        mode: str = "train",
        seed: int = 0,
        held_out: Sequence[str] = (),
        instruction_tokenizer: Any = None,
        instruction_max_length: int = 32,
    ) -> None:
        tasks = task_weights(tasks)
        unknown_types = set(held_out) - set(QUESTION_TYPES)
        if unknown_types:
            raise ValueError(f"unknown held-out question types {sorted(unknown_types)}; valid: {list(QUESTION_TYPES)}")
        unknown = set(tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown tasks {sorted(unknown)}; valid: {list(TASKS)}")
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.tokenizer = tokenizer
        self.template = template
        self.num_image_tokens = num_image_tokens
        self.max_length = max_length
        self.tasks = {k: float(v) for k, v in tasks.items() if v > 0 or v != v}  # NaN: "sqrt"
        self.instructions = {k: list(v) for k, v in instructions.items()}
        self.is_encoder_decoder = is_encoder_decoder
        self.mode = mode
        self.seed = seed
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {IMAGE_PLACEHOLDER} token; add it as a special token")
        self.num_truncated = 0
        self.held_out = tuple(held_out)
        self.instruction_tokenizer = instruction_tokenizer
        self.instruction_max_length = instruction_max_length
        self.num_task_fallbacks = 0  # samples that lacked a configured task's data
        self._missing_logged: set[str] = set()

    # ---- conversations --------------------------------------------------------------
    def offers(self, sample: Mapping[str, Any], task: str) -> bool:
        """Whether ``sample`` has what ``task`` needs (a caption always; VQA: a question not held out)."""
        if task == "caption":
            return True
        meta = sample.get("meta", {})
        if task in ("vqa", "vqa_turns"):
            return bool(meta.get("qa")) and bool(self.trainable_questions(meta))
        return bool(meta.get(TASK_FIELDS[task]))

    def _fell_back(self, sample: Mapping[str, Any], missing: Sequence[str]) -> None:
        """Count a sample that lacked configured tasks; log each missing task once per collator."""
        self.num_task_fallbacks += 1
        new = [t for t in missing if t not in self._missing_logged]
        if new:
            self._missing_logged.update(new)
            log.warning(
                "sample %s has no data for task(s) %s (fields %s): such samples train on the tasks they "
                "offer, else on their caption; counted as task_fallbacks",
                sample.get("key", "?"), new, [TASK_FIELDS.get(t, t) for t in new],
            )

    def _rng(self, key: str) -> random.Random:
        return random.Random(zlib.crc32(key.encode()) * 7919 + self.seed)

    def _instruction(self, kind: str, rng: random.Random) -> str:
        options = self.instructions.get(kind) or [""]
        return rng.choice(options)

    def conversation(self, sample: Mapping[str, Any], task: str, rng: random.Random) -> list[Turn]:
        """The turns of ``task`` on ``sample``; its caption when the sample lacks the task's data."""
        meta = sample.get("meta", {})
        if not self.offers(sample, task):
            self._fell_back(sample, [task])
            task = "caption"
        if task == "caption":
            return _single(self._instruction("caption", rng), sample["caption"])
        if task == "describe":
            return _single(self._instruction("describe", rng), _field(meta, "description"))
        if task == "vqa":
            qa = rng.choice(self.trainable_questions(meta))
            return _single(self.vqa_prompt(qa["question"]), qa["answer"])
        if task == "vqa_turns":
            first, *rest = self.trainable_questions(meta)  # in the record's order, already random
            turns = _single(self.vqa_prompt(first["question"]), first["answer"])
            for qa in rest:
                turns += [{"from": HUMAN, "value": self.vqa_prompt(qa["question"])}, {"from": ASSISTANT, "value": qa["answer"]}]
            return turns
        turns = list(_field(meta, "conversation"))
        if self.held_out:  # a held-out kind of question is unseen in every task, conversations too
            turns = without_held_out(turns, self.held_out)
            if not turns:
                return _single(self._instruction("caption", rng), sample["caption"])
        return turns

    def trainable_questions(self, meta: Mapping[str, Any]) -> list[Mapping[str, str]]:
        """The sample's questions minus the held-out types."""
        return [qa for qa in _field(meta, "qa") if question_type(qa["question"]) not in self.held_out]

    def sqrt_weights(self, sample: Mapping[str, Any]) -> dict[str, float]:
        """Per-sample task weights: sqrt(number of examples of the task this sample offers)."""
        meta = sample.get("meta", {})
        sizes = {
            "caption": 1,
            "describe": int(bool(meta.get("description"))),
            "conversation": int(bool(meta.get("conversation"))),
            "vqa": len(self.trainable_questions(meta)) if meta.get("qa") else 0,
        }
        return {name: size**0.5 for name, size in sizes.items() if size}

    def vqa_prompt(self, question: str) -> str:
        """A short-answer question: the question plus the 'answer with one word' instruction."""
        suffix = (self.instructions.get("short_answer") or [""])[0]
        return f"{question} {suffix}".strip()

    def sample_task(self, rng: random.Random, sample: Mapping[str, Any] | None = None) -> str:
        """A task drawn by the configured weights among those ``sample`` offers (caption if none)."""
        weights = self.tasks
        if any(w != w for w in weights.values()):  # "sqrt": NaN placeholders, weights from the sample
            weights = self.sqrt_weights(sample or {"meta": {}})
        elif sample is not None:
            offered = {name: w for name, w in weights.items() if self.offers(sample, name)}
            if len(offered) < len(weights):
                self._fell_back(sample, [name for name in weights if name not in offered])
                weights = offered or {"caption": 1.0}
        names = list(weights)
        return rng.choices(names, weights=[weights[n] for n in names])[0]

    def instructions_batch(self, conversations: Sequence[Sequence[Turn]]) -> dict[str, torch.Tensor]:
        """The first user turn of each conversation, tokenised for an instruction-aware Q-Former."""
        texts = [c[0]["value"].replace(IMAGE_PLACEHOLDER, "").strip() for c in conversations]
        tokens = self.instruction_tokenizer(texts, padding=True, truncation=True,
                                            max_length=self.instruction_max_length, return_tensors="pt")
        return {"instruction_ids": tokens["input_ids"], "instruction_mask": tokens["attention_mask"]}

    # ---- batches --------------------------------------------------------------------
    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        visual = (
            {FEATURES: torch.stack([s["features"] for s in samples])}  # (B, N, D) from a feature cache
            if "features" in samples[0]
            else {PIXEL_VALUES: torch.stack([s["image"] for s in samples])}  # (B, 3, H, W)
        )
        batch = {
            **visual,
            CAPTIONS: [s["caption"] for s in samples],
            META: [s.get("meta", {}) for s in samples],
        }
        return batch | (self._train(samples) if self.mode == "train" else self._eval(samples))

    def _train(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        encoded, conversations = [], []
        fallbacks_before = self.num_task_fallbacks
        for s in samples:
            rng = self._rng(str(s.get("key", s["caption"])))
            turns = self.conversation(s, self.sample_task(rng, s), rng)
            conversations.append(turns)
            encoded.append(self.encode(turns))
        self.num_truncated += sum(e.truncated for e in encoded)
        pad_id = self.tokenizer.pad_token_id
        instructions = self.instructions_batch(conversations) if self.instruction_tokenizer is not None else {}
        instructions["num_task_fallbacks"] = self.num_task_fallbacks - fallbacks_before  # counted by the module
        if self.is_encoder_decoder:
            return self._seq2seq(encoded, pad_id) | instructions
        return instructions | {
            INPUT_IDS: pad([e.input_ids for e in encoded], pad_id),  # (B, L)
            ATTENTION_MASK: pad([[1] * len(e.input_ids) for e in encoded], 0),  # (B, L)
            LABELS: pad([e.labels for e in encoded], IGNORE_INDEX),  # (B, L)
            "num_truncated": sum(e.truncated for e in encoded),
        }

    def encode(self, turns: Sequence[Turn]) -> Encoded:
        segments = self.template.segments(turns)
        return encode_segments(self.tokenizer, segments, self.image_token_id, self.num_image_tokens, self.max_length)

    def _seq2seq(self, encoded: list[Encoded], pad_id: int) -> dict[str, Any]:
        """Encoder-decoder LLMs: the last supervised span is the target, the rest the source."""
        sources, targets = [], []
        for e in encoded:
            start = _last_supervised_start(e.labels)
            sources.append(e.input_ids[:start])
            target = e.input_ids[start:]
            if self.tokenizer.eos_token_id is not None and (not target or target[-1] != self.tokenizer.eos_token_id):
                target = [*target, self.tokenizer.eos_token_id]
            targets.append(target)
        return {
            INPUT_IDS: pad(sources, pad_id),
            ATTENTION_MASK: pad([[1] * len(s) for s in sources], 0),
            LABELS: pad(targets, IGNORE_INDEX),
            "num_truncated": sum(e.truncated for e in encoded),
        }

    def prompt_ids(self, turns: Sequence[Turn]) -> list[int]:
        """Token ids of a generation prompt (ends with the assistant prefix), images expanded."""
        ids = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        ids += _ids(self.tokenizer, self.template.prompt(turns))
        ids = expand_image_token(ids, self.image_token_id, self.num_image_tokens)
        if len(ids) > self.max_length:
            raise ValueError(f"prompt of {len(ids)} tokens exceeds max_length={self.max_length}")
        return ids

    def prompts(self, conversations: Sequence[Sequence[Turn]]) -> dict[str, torch.Tensor]:
        """Left-padded prompt batch for generation (new tokens then line up at the right)."""
        ids = [self.prompt_ids(turns) for turns in conversations]
        batch = {
            INPUT_IDS: pad(ids, self.tokenizer.pad_token_id, side="left"),
            ATTENTION_MASK: pad([[1] * len(i) for i in ids], 0, side="left"),
        }
        if self.instruction_tokenizer is not None:
            batch |= self.instructions_batch(conversations)
        return batch

    def _eval(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Generation prompts: a caption request for every sample, and one of its questions
        when the data has Q&A (the embedded data does; a folder of captions does not)."""
        caption_turns = [[{"from": HUMAN, "value": f"{IMAGE_PLACEHOLDER}\n{self._caption_instruction()}"}]] * len(samples)
        batch: dict[str, Any] = {"caption_prompt": self.prompts(caption_turns)}
        if all(s.get("meta", {}).get("qa") for s in samples):
            vqa = [self._rng(str(s.get("key", i))).choice(s["meta"]["qa"]) for i, s in enumerate(samples)]
            vqa_turns = [[{"from": HUMAN, "value": f"{IMAGE_PLACEHOLDER}\n{self.vqa_prompt(qa['question'])}"}] for qa in vqa]
            batch |= {
                "vqa_prompt": self.prompts(vqa_turns),
                "questions": [qa["question"] for qa in vqa],
                "answers": [qa["answer"] for qa in vqa],
                "question_types": [qa.get("type") or question_type(qa["question"]) for qa in vqa],
            }
        return batch

    def _caption_instruction(self) -> str:
        options = self.instructions.get("caption") or [""]
        return options[0]


def without_held_out(turns: Sequence[Turn], held_out: Sequence[str]) -> list[Turn]:
    """The conversation minus its (question, answer) pairs of held-out kinds; the image
    placeholder moves to the first remaining question."""
    pairs = [(turns[i], turns[i + 1]) for i in range(0, len(turns) - 1, 2)]
    kept = [(q, a) for q, a in pairs if question_type(q["value"].replace(IMAGE_PLACEHOLDER, "").strip()) not in held_out]
    out: list[Turn] = []
    for i, (q, a) in enumerate(kept):
        text = q["value"].replace(IMAGE_PLACEHOLDER, "").strip()
        out += [{"from": HUMAN, "value": f"{IMAGE_PLACEHOLDER}\n{text}" if i == 0 else text}, dict(a)]
    return out


def _single(instruction: str, answer: str) -> list[Turn]:
    value = f"{IMAGE_PLACEHOLDER}\n{instruction}" if instruction else IMAGE_PLACEHOLDER
    return [{"from": HUMAN, "value": value}, {"from": ASSISTANT, "value": answer}]


def _field(meta: Mapping[str, Any], name: str) -> Any:
    value = meta.get(name)
    if not value:  # callers check ``offers`` first: reaching this is a bug, not bad data
        raise ValueError(f"sample has no {name!r} in its json record; this task needs it (e.g. the shapes data)")
    return value


def _last_supervised_start(labels: list[int]) -> int:
    supervised = [i for i, v in enumerate(labels) if v != IGNORE_INDEX]
    if not supervised:
        raise ValueError(
            "an encoder-decoder LLM needs a target, and this sequence supervises nothing (the template "
            "renders no assistant reply, or max_length cut it off): use a template with an assistant turn "
            "or raise the model's max_length"
        )
    end = max(supervised)
    start = end
    while start > 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    return start
