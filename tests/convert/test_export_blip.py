"""Export of the BLIP family: each transformers class loads the export and computes what the zoo
model does; re-import gives the zoo model back bit for bit (the half of BLIP a class has no
place for travels in mmzoo_extra.safetensors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval

from mmzoo.convert import ConversionError, export_model, load_pretrained
from mmzoo.convert.load import EXTRA_FILE
from tests.conftest import run_zoo
from tests.convert.conftest import blip_tokenizer
from tests.convert.test_blip2 import compare


def _assert_identical(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert [k for k in sa if not torch.equal(sa[k], sb[k])] == []


@pytest.fixture
def trained_blip(blip_dirs: dict[str, Path]) -> torch.nn.Module:
    """A zoo BLIP whose every tensor differs from its init (as after training in the zoo)."""
    zoo = load_pretrained(blip_dirs["captioning"]).model
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in zoo.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.01)
    return zoo


def test_blip_exports_as_the_captioning_class_with_the_same_outputs(trained_blip, tmp_path: Path) -> None:
    info = export_model(trained_blip, tmp_path / "out")  # auto: the first class that fits
    assert info["class"] == "BlipForConditionalGeneration" and EXTRA_FILE in info["files"]
    reference = BlipForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    batch = blip_tokenizer()(["a photo of the red circle", "the cat"], padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    decoder_ids = ids.clone()
    decoder_ids[:, 0] = trained_blip.text.dec_token_id
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = reference(pixel_values=pixels, input_ids=decoder_ids, attention_mask=mask).logits
        got = trained_blip.text.decode(ids, mask, trained_blip.encoder(pixels))
    assert (got - ref)[mask.bool()].abs().max() <= 1e-4
    _assert_identical(trained_blip, load_pretrained(tmp_path / "out").model)


def test_blip_exports_as_the_retrieval_class_with_the_same_scores(trained_blip, tmp_path: Path) -> None:
    export_model(trained_blip, tmp_path / "out", layout="BlipForImageTextRetrieval")
    reference = BlipForImageTextRetrieval.from_pretrained(tmp_path / "out").eval()
    batch = blip_tokenizer()(["a photo of the red circle", "the cat"], padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        itc = reference(input_ids=ids, pixel_values=pixels, attention_mask=mask, use_itm_head=False).itm_score
        got = trained_blip.encode_image(pixels) @ trained_blip.encode_text(ids, mask).T
    assert (got - itc).abs().max() <= 1e-4
    _assert_identical(trained_blip, load_pretrained(tmp_path / "out").model)


@pytest.mark.parametrize("which", ["blip2", "instructblip"])
def test_blip2_and_instructblip_export_to_their_class_and_back(
    which: str, blip2_dir: Path, instructblip_dir: Path, tmp_path: Path
) -> None:
    zoo = load_pretrained(blip2_dir if which == "blip2" else instructblip_dir).model
    info = export_model(zoo, tmp_path / "out")
    assert (
        info["class"]
        == {"blip2": "Blip2ForConditionalGeneration", "instructblip": "InstructBlipForConditionalGeneration"}[
            which
        ]
    )
    # the class loads the export; the re-imported zoo model computes what it does
    result = compare(tmp_path / "out", instructblip=which == "instructblip")
    assert result["logits"] <= 1e-4 and result["greedy_equal"]
    _assert_identical(zoo, result["zoo"])


def test_a_blip2_that_reads_the_tower_without_its_norm_is_not_written_as_blip2(
    blip2_dir: Path, tmp_path: Path
) -> None:
    zoo = load_pretrained(blip2_dir).model
    zoo.encoder.norm = False
    with pytest.raises(ConversionError, match=r"norm False; BLIP-2 reads all tokens of the last layer"):
        export_model(zoo, tmp_path / "out", layout="Blip2ForConditionalGeneration")


@pytest.mark.slow
def test_cli_exports_a_run_of_a_real_instructblip_checkpoint(instructblip_dir: Path, tmp_path: Path) -> None:
    """End to end: ``pretrained=<checkpoint> stage=test`` writes a run, ``python -m mmzoo.export``
    writes it back as InstructBlipForConditionalGeneration, which computes what the run's model does."""
    run_zoo(tmp_path / "run", ["model=instructblip", f"pretrained={instructblip_dir}", "stage=test",
                              "trainer.limit_test_batches=1", "evaluation.blind=[]"])  # the export is under test
    done = subprocess.run(
        [sys.executable, "-m", "mmzoo.export", str(tmp_path / "run"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["class"] == "InstructBlipForConditionalGeneration"
    result = compare(tmp_path / "out", instructblip=True)
    assert result["logits"] <= 1e-4 and result["greedy_equal"]
    _assert_identical(load_pretrained(tmp_path / "run").model, result["zoo"])
