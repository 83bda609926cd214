"""Projector-only releases assembled with the parts they name: MiniGPT-4's ``llama_proj`` with a
BLIP-2 checkpoint's vision side and Q-Former and a LLaMA; LLaVA's ``mm_projector.bin`` with a
CLIP tower and a LLaMA. The assembled zoo model computes what the original composition does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    AutoTokenizer,
    Blip2ForConditionalGeneration,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaForConditionalGeneration,
)

from mmzoo.compare.records import Run, read_run
from mmzoo.convert import ConversionError, load_pretrained
from mmzoo.convert.checkpoint import read_file
from mmzoo.data.tokenizer import build_word_tokenizer
from mmzoo.rundir import read_weights
from tests.conftest import run_zoo
from tests.convert.conftest import WORDS, image_prompt, llm_config

GREEDY = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)


def test_minigpt4_is_blip2s_vision_side_and_qformer_then_llama_proj_then_the_llm(minigpt4_files) -> None:
    proj, blip2, llm = minigpt4_files
    module = load_pretrained(proj, blip2=str(blip2), llm=str(llm))
    assert module.frozen_names == ["encoder", "llm"] and module.model.bridge.frozen  # MiniGPT-4's recipe
    zoo = module.model

    # the original composition, by hand: ViT -> Q-Former (BLIP-2's) -> llama_proj -> LLaMA
    reference = Blip2ForConditionalGeneration.from_pretrained(blip2).eval()
    lm = LlamaForCausalLM.from_pretrained(llm).eval()
    llama_proj = torch.nn.Linear(*reversed(read_file(proj)["llama_proj.weight"].shape))
    llama_proj.load_state_dict({k.split(".", 1)[1]: v for k, v in read_file(proj).items()})
    ids, mask = image_prompt(zoo, ["<image> what is it ?", "a photo of <image> the red"])
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        image = reference.vision_model(pixels).last_hidden_state  # (B, N, D_v) through ln_vision
        queries = reference.query_tokens.expand(2, -1, -1)
        visual = llama_proj(
            reference.qformer(query_embeds=queries, encoder_hidden_states=image).last_hidden_state
        )
        embeds = lm.get_input_embeddings()(ids.masked_fill(ids == zoo.image_token_id, 0))
        embeds[ids == zoo.image_token_id] = visual.reshape(-1, visual.shape[-1])
        ref_logits = lm(inputs_embeds=embeds, attention_mask=mask).logits
        assert (zoo.visual_embeds(pixels) - visual).abs().max() <= 1e-5  # the projected features
        assert (zoo(pixels, ids, mask).logits - ref_logits)[mask.bool()].abs().max() <= 1e-4
    assert torch.equal(
        lm.generate(inputs_embeds=embeds, attention_mask=mask, **GREEDY),
        zoo.generate(pixels, ids, mask, **GREEDY),
    )


def test_llava_mm_projector_with_its_tower_and_llm_is_the_transformers_llava(
    llava_dir: Path, tmp_path: Path
) -> None:
    """LLaVA's release split into its three files assembles into the LlavaForConditionalGeneration it came from."""
    reference = LlavaForConditionalGeneration.from_pretrained(llava_dir).eval()
    reference.model.vision_tower.save_pretrained(tmp_path / "vision")
    lm = LlamaForCausalLM(reference.config.text_config)
    lm.model.load_state_dict(reference.model.language_model.state_dict())
    lm.lm_head.load_state_dict(reference.lm_head.state_dict())
    lm.save_pretrained(tmp_path / "llm")
    AutoTokenizer.from_pretrained(llava_dir).save_pretrained(tmp_path / "llm")
    projector = reference.model.multi_modal_projector
    torch.save(
        {
            f"model.mm_projector.{i}.{k}": v
            for i, layer in ((0, projector.linear_1), (2, projector.linear_2))
            for k, v in layer.state_dict().items()
        },
        tmp_path / "mm_projector.bin",
    )

    zoo = load_pretrained(
        tmp_path / "mm_projector.bin", vision=str(tmp_path / "vision"), llm=str(tmp_path / "llm")
    ).model
    ids, mask = image_prompt(zoo, ["<image> what is it ?"])
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        diff = (
            zoo(pixels, ids, mask).logits
            - reference(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits
        )
    assert diff.abs().max() <= 1e-4


def test_a_projector_file_without_its_parts_names_them(minigpt4_files) -> None:
    proj, _, llm = minigpt4_files
    with pytest.raises(
        ConversionError, match=r"(?s)minigpt4 projector file.*blip2=<a Blip2ForConditionalGeneration"
    ):
        load_pretrained(proj, llm=str(llm))


def test_the_command_line_says_which_parts_a_projector_file_needs(minigpt4_files, tmp_path: Path) -> None:
    proj, _, _ = minigpt4_files
    with pytest.raises(ConversionError, match=r"(?s)pretrained_with\.<part>=.*blip2=.*llm="):
        run_zoo(tmp_path / "run", ["model=minigpt4", f"pretrained={proj}", "stage=test"])


def test_an_llm_tokenizer_without_image_token_grows_the_tables_by_one_mean_row(
    minigpt4_files, tmp_path: Path
) -> None:
    """Vicuna has no ``<image>``: the zoo adds it; the checkpoint's rows are kept as they are."""
    proj, blip2, _ = minigpt4_files
    tok = build_word_tokenizer(WORDS, extra_special_tokens=(), add_eos=False)
    config = {k: v for k, v in llm_config("llama", tok).items() if k != "model_type"}
    LlamaForCausalLM(LlamaConfig(**config)).save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    zoo = load_pretrained(proj, blip2=str(blip2), llm=str(tmp_path / "llm")).model
    table = LlamaForCausalLM.from_pretrained(tmp_path / "llm").get_input_embeddings().weight  # (V, D)
    grown = zoo.llm.model.get_input_embeddings().weight  # (V + 1, D)
    assert grown.shape[0] == len(tok) + 1 == table.shape[0] + 1 and torch.equal(grown[:-1], table)
    assert torch.allclose(grown[-1], table.mean(dim=0))


@pytest.mark.slow
def test_minigpt4_from_its_projector_file_is_evaluated_from_the_command_line(
    minigpt4_files, tmp_path: Path
) -> None:
    proj, blip2, llm = minigpt4_files
    metrics = run_zoo(
        tmp_path / "run",
        [
            "model=minigpt4",
            f"pretrained={proj}",
            f"pretrained_with.blip2={blip2}",
            f"pretrained_with.llm={llm}",
            "stage=test",
        ],
    )
    assert metrics["train"]["steps"] == 0 and metrics["lineage"]["pretrained"] == str(proj)
    assert isinstance(read_run(tmp_path / "run"), Run)  # the leaderboard ranks it
    assert torch.equal(
        read_weights(tmp_path / "run")["bridge.projector.layers.0.weight"],
        read_file(proj)["llama_proj.weight"],
    )
