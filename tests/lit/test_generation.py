"""Generation stops each sequence at the template's end-of-turn marker while decoding."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from mmzoo.api import build
from mmzoo.lit.vlm import EndOfTurn

TINY_PARTS = ["encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null"]  # random parts


class Script(LogitsProcessor):
    """Forces row r to emit ``rows[r][t]`` at step t (its last token once the script ends)."""

    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = rows
        self.steps = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        forced = torch.full_like(scores, float("-inf"))
        for r, row in enumerate(self.rows):
            forced[r, row[min(self.steps, len(row) - 1)]] = 0.0
        self.steps += 1
        return forced


def test_end_of_turn_is_decided_per_sequence():
    stop = EndOfTurn([7, 7, 7])
    ids = torch.tensor([[1, 7, 7, 7], [7, 7, 1, 7], [7, 7, 7, 1]])
    assert stop(ids, torch.zeros(3, 10)).tolist() == [True, False, False]
    assert stop(ids[:, :2], torch.zeros(3, 10)).tolist() == [False, False, False]  # shorter than the marker


def test_each_sequence_stops_at_the_marker_while_the_others_go_on():
    module = build("minigpt4", TINY_PARTS).eval()  # vicuna_v0: replies end with '###', three tokens here
    tok = module.tokenizer
    marker = module.end_of_turn_ids()
    assert len(marker) == 3
    red, green, blue = (tok.convert_tokens_to_ids(w) for w in ("red", "green", "blue"))
    rows = [[red, *marker, blue], [green] * 5 + [*marker, blue]]
    prompt = module.collator(train=False).prompts([[{"from": "human", "value": "<image>\nwhat?"}]] * 2)
    pixels = torch.randn(2, 3, 32, 32)

    def generate(**options):
        return module._generate_ids(pixels, prompt, max_new_tokens=20, logits_processor=LogitsProcessorList([Script(rows)]),
                                    **options)  # fmt: skip

    stopped = generate()
    assert stopped.shape[1] == 8  # the longer reply and its marker, not max_new_tokens
    assert stopped[0, 4:].eq(tok.pad_token_id).all()  # the finished row only receives padding
    assert module.decode(stopped) == ["red", "green green green green green"]
    # the old way (generate to the end, cut afterwards) reads the same texts, 2.5x the steps
    cut_after = generate(stopping_criteria=None, eos_token_id=tok.eos_token_id)
    assert cut_after.shape[1] == 20
    assert module.decode(cut_after) == module.decode(stopped)


def test_a_one_token_marker_is_an_eos_id():
    module = build("llava", TINY_PARTS)  # llava_v1: replies end with '</s>'
    options = module.stop_options()
    assert options["eos_token_id"] == [module.tokenizer.eos_token_id]
    assert "stopping_criteria" not in options


def test_an_evaluation_batch_encodes_its_images_once_for_all_its_prompts():
    module = build("llava", TINY_PARTS).eval()
    calls = [0]
    module.model.encoder.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    collator = module.collator(train=False)
    captions = collator.prompts([[{"from": "human", "value": "<image>\ndescribe the image."}]] * 2)
    questions = collator.prompts([[{"from": "human", "value": "<image>\nwhat colour is the circle?"}]] * 2)
    pixels = torch.randn(2, 3, 32, 32)
    texts = module.generate_text(pixels, captions), module.generate_text(pixels, questions)
    assert calls == [1]
    # the same texts as generating from the pixels for each prompt batch
    assert texts == tuple(module.decode(module._generate_ids(pixels, p)) for p in (captions, questions))
    calls[0] = 0
    module.generate_text(torch.zeros_like(pixels), captions)  # another tensor (a blind condition)
    pixels.mul_(0.5)  # the same tensor changed in place
    module.generate_text(pixels, captions)
    assert calls == [2]
    with torch.inference_mode():  # as in Lightning's test loop: no version counters
        frozen = torch.randn(2, 3, 32, 32)
        assert module.generate_text(frozen, captions) == module.generate_text(frozen, captions)
    assert calls == [3]
