"""Export: the transformers class loads the export and computes the same outputs; re-import
is the identity, bit for bit; models no transformers class fits are written as parts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer, CLIPModel, LlavaForConditionalGeneration

from mmzoo import rundir as runs
from mmzoo.compose import compose_config
from mmzoo.convert import ConversionError, export_model, load_pretrained
from mmzoo.convert.load import EXTRA_FILE
from mmzoo.data.conversation import expand_image_token
from tests.conftest import run_zoo
from tests.convert.conftest import image_prompt


def _assert_identical(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert different == []


def test_clip_exports_as_clipmodel_with_the_same_outputs(clip_dir: Path, tmp_path: Path) -> None:
    zoo = load_pretrained(clip_dir).model
    with (
        torch.no_grad()
    ):  # as after zoo training: the tower's unused copy of its norm differs from image_norm
        zoo.encoder.model.post_layernorm.weight.mul_(0.5)
        zoo.image_norm.bias.add_(0.1)
    info = export_model(zoo, tmp_path / "out")
    assert info["class"] == "CLIPModel" and EXTRA_FILE in info["files"]

    reference = CLIPModel.from_pretrained(tmp_path / "out").eval()
    processor = AutoProcessor.from_pretrained(tmp_path / "out")
    batch = processor(
        text=["a photo of a cat", "the red circle"],
        images=[Image.new("RGB", (40, 40), "red")] * 2,
        return_tensors="pt",
        padding=True,
    )
    with torch.no_grad():
        ref = reference(**batch)
        out = zoo(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    assert (out.image_embeds - ref.image_embeds).abs().max() <= 1e-5
    assert (out.text_embeds - ref.text_embeds).abs().max() <= 1e-5
    assert (out.logit_scale * out.image_embeds @ out.text_embeds.T - ref.logits_per_image).abs().max() <= 1e-4

    _assert_identical(zoo, load_pretrained(tmp_path / "out").model)


@pytest.mark.parametrize("depth", [2, 1])
def test_llava_exports_as_llava_with_the_same_outputs(llava_dir: Path, tmp_path: Path, depth: int) -> None:
    zoo = load_pretrained(llava_dir).model if depth == 2 else _depth_one_llava(llava_dir)
    info = export_model(zoo, tmp_path / "out")
    assert info["class"] == "LlavaForConditionalGeneration"

    reference = LlavaForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    ids, mask = image_prompt(zoo, ["<image> what is it ?", "the red <image> circle"])
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        diff = (
            zoo(pixels, ids, mask).logits
            - reference(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits
        )
    assert diff[mask.bool()].abs().max() <= 1e-4

    # the saved processor expands <image> exactly as the zoo's collator does
    processor = AutoProcessor.from_pretrained(tmp_path / "out")
    got = processor(text="<image> what is it ?", images=Image.new("RGB", (32, 32)), return_tensors="pt")[
        "input_ids"
    ]
    tok = zoo.llm.tokenizer
    assert got[0].tolist() == expand_image_token(
        tok("<image> what is it ?")["input_ids"], zoo.image_token_id, zoo.num_image_tokens
    )

    _assert_identical(zoo, load_pretrained(tmp_path / "out").model)


def _depth_one_llava(llava_dir: Path) -> torch.nn.Module:
    """LLaVA v1's linear projector: the zoo LLaVA with a depth-1 bridge (random projector)."""
    from mmzoo.convert.load import build_pretrained, read_checkpoint

    imported = read_checkpoint(str(llava_dir))
    imported.parts["bridge"]["depth"] = 1
    imported.rules = [r for r in imported.rules if "linear_2" not in r.source]
    imported.weights = {k: v for k, v in imported.weights.items() if "linear_2" not in k}
    return build_pretrained(imported)[0].model


def test_model_without_a_transformers_layout_is_written_as_parts(tmp_path: Path) -> None:
    """MiniGPT-4's Q-Former bridge fits no transformers class: parts + config, re-imported exactly."""
    overrides = ["model=minigpt4", "encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null"]
    build_cfg, saved_cfg = runs.resolve_parts(compose_config(overrides))
    module = instantiate(build_cfg.model, _convert_="all")
    info = export_model(module, tmp_path / "out", config=saved_cfg)
    assert info["format"] == "mmzoo-parts"
    assert (
        "the bridge has a Q-Former (LLaVA's projector is an MLP)"
        in info["why_not_transformers"]["LlavaForConditionalGeneration"]
    )
    assert {"encoder.safetensors", "bridge.safetensors", "llm.safetensors"} <= set(info["files"])
    assert json.loads((tmp_path / "out" / "mmzoo.json").read_text()) == info
    _assert_identical(module.model, load_pretrained(tmp_path / "out").model)


def test_forcing_a_layout_that_does_not_fit_says_why(clip_dir: Path, tmp_path: Path) -> None:
    zoo = load_pretrained(clip_dir).model
    with pytest.raises(ConversionError, match="not a vision-language model"):
        export_model(zoo, tmp_path / "out", layout="LlavaForConditionalGeneration")


@pytest.mark.slow
def test_cli_exports_a_trained_clip_run(tmp_path: Path) -> None:
    """End to end: a zoo CLIP trained a few steps (bias-free projection, as CLIP's) -> CLIPModel."""
    run_dir = tmp_path / "run"
    run_zoo(
        run_dir,
        [
            "model=clip",
            "+bridge.bias=false",
            "trainer.max_steps=3",
            "data.train_size=250",
            "data.test_size=64",
        ],
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "mmzoo.export", str(run_dir), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["class"] == "CLIPModel"

    from mmzoo.api import from_pretrained

    zoo = from_pretrained(run_dir).model
    reference = CLIPModel.from_pretrained(out).eval()
    batch = AutoTokenizer.from_pretrained(out)(
        ["a red circle", "two blue squares"], padding=True, return_tensors="pt"
    )
    pixels = torch.randn(2, 3, zoo.encoder.image_size, zoo.encoder.image_size)
    with torch.no_grad():
        ref = reference(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=pixels
        )
        got = zoo(pixels, batch["input_ids"], batch["attention_mask"])
    assert (got.logit_scale * got.image_embeds @ got.text_embeds.T - ref.logits_per_image).abs().max() <= 1e-4
    _assert_identical(zoo, load_pretrained(out).model)
