"""Conversation templates as data: how a multi-turn exchange about an image becomes text.

A template (``conf/template/*.yaml``) names the role prefixes, separators and the string
the ``<image>`` placeholder becomes. ``segments`` renders a conversation into pieces
marked supervised or not: every assistant reply (with its end-of-turn marker) is
supervised, everything else (system prompt, user turns, role prefixes, image) is not.
Token-level masks are then built piece by piece, so they are exact by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mmzoo.presets import load_preset, presets

IMAGE_PLACEHOLDER = "<image>"
HUMAN, ASSISTANT = "human", "gpt"

Turn = Mapping[str, str]  # {"from": "human" | "gpt", "value": str}, LLaVA's format


@dataclass(frozen=True)
class ConversationTemplate:
    """Vicuna v0 (MiniGPT-4), LLaVA v1 and plain captioning are instances of this."""

    name: str
    system: str = ""
    user: str = ""
    assistant: str = ""
    turn_sep: str = ""
    end_of_turn: str = "</s>"
    image: str = IMAGE_PLACEHOLDER
    drop_instruction: bool = False  # 'plain': the user turn is only the image

    def _user_text(self, value: str, first: bool) -> str:
        if self.drop_instruction:
            return self.image if IMAGE_PLACEHOLDER in value else ""
        text = value.replace(IMAGE_PLACEHOLDER, self.image)
        return text.strip() if first else text

    def segments(self, turns: Sequence[Turn], require_image: bool = True) -> list[tuple[str, bool]]:
        """``[(text, supervised), ...]`` for a conversation that ends with an assistant reply."""
        check_conversation(turns, require_image)
        if turns[-1]["from"] != ASSISTANT:
            raise ValueError("a training conversation must end with an assistant turn")
        out: list[tuple[str, bool]] = []
        prefix = self.system
        for i in range(0, len(turns), 2):
            user, reply = turns[i], turns[i + 1]
            prefix += self.user + self._user_text(user["value"], i == 0) + self.turn_sep + self.assistant
            out.append((prefix, False))
            out.append((reply["value"].strip() + self.end_of_turn, True))
            prefix = ""
        return out

    def prompt(self, turns: Sequence[Turn], require_image: bool = True) -> str:
        """Text for generation: the conversation so far (ending with a user turn) + assistant prefix."""
        check_conversation(turns, require_image, training=False)
        text = self.system
        for i, turn in enumerate(turns):
            if turn["from"] == HUMAN:
                text += self.user + self._user_text(turn["value"], i == 0) + self.turn_sep + self.assistant
            else:
                text += turn["value"].strip() + self.end_of_turn
        return text


def check_conversation(turns: Sequence[Turn], require_image: bool, training: bool = True) -> None:
    """Fail clearly on conversations that would give a wrong mask or a missing image."""
    if not turns:
        raise ValueError("empty conversation")
    roles = [t.get("from") for t in turns]
    expected = [HUMAN if i % 2 == 0 else ASSISTANT for i in range(len(turns))]
    if roles != expected:
        raise ValueError(f"turns must alternate human/gpt starting with human, got {roles}")
    if training and ASSISTANT not in roles:
        raise ValueError("conversation has no assistant turn: nothing to supervise")
    if not training and roles[-1] != HUMAN:
        raise ValueError("a generation prompt must end with a human turn")
    n_images = sum(t["value"].count(IMAGE_PLACEHOLDER) for t in turns)
    if require_image and n_images != 1:
        raise ValueError(
            f"expected exactly one {IMAGE_PLACEHOLDER} placeholder in the conversation, found {n_images}: "
            f"put it in the first human turn, e.g. '{IMAGE_PLACEHOLDER}\\nWhat is this?'"
        )


def load_template(name: str) -> ConversationTemplate:
    """A template preset by name (``conf/template/<name>.yaml``), without Hydra."""
    data = load_preset("template", name)
    data.pop("_target_", None)
    return ConversationTemplate(**data)


def prompt_words() -> list[str]:
    """Every word in the shipped templates and instruction lists (for in-memory tokenizers)."""
    texts: list[str] = []
    for name in presets("template"):
        data = load_preset("template", name)
        texts += [str(v) for k, v in data.items() if k not in ("_target_", "name") and isinstance(v, str)]
    for name in presets("instructions"):
        for values in load_preset("instructions", name).values():
            texts += list(values)
    words = set()
    for text in texts:
        for ch in ".,?!:;'\"#()<>/":
            text = text.replace(ch, " ")
        words.update(w.lower() for w in text.split())
    return sorted(words)
