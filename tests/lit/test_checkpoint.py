"""Checkpoints: atomic writes, the newest intact one, keep=N, and small strict checkpoints
(trainable weights + optimizer state, frozen parts named and hashed; a resume on other frozen
parts is refused, naming them)."""

from __future__ import annotations

import io

import pytest
import torch

from mmzoo.lit import checkpoint as ck
from mmzoo.lit.base import FROZEN_MANIFEST, TRAINING_STATE
from tests.conftest import run_zoo

# a LLaVA of random tiny parts (no zoo parts to make): encoder and LLM frozen, the projector trains
LLAVA = ["model=llava", "encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null",
         "trainer.max_steps=2", "callbacks.checkpoint.every_n_train_steps=1", "data.test_size=16",
         "trainer.limit_test_batches=1", "num_examples=0"]  # fmt: skip


def test_atomic_save_leaves_the_old_file_whole_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "step=00000001.ckpt"
    ck.atomic_torch_save({"step": 1}, path)
    real = torch.save

    def dies_midway(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real(obj, buffer)
        f.write(buffer.getvalue()[:10])
        raise KeyboardInterrupt  # a kill as Python sees it (SIGKILL: tests/test_resume.py)

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        ck.atomic_torch_save({"step": 2}, path)
    monkeypatch.setattr(torch, "save", real)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert list(tmp_path.iterdir()) == [path]  # no partial file left either


def test_newest_checkpoint_skips_a_truncated_one_and_partials_are_removed(tmp_path):
    for step in (5, 10):
        ck.atomic_torch_save({"global_step": step}, tmp_path / f"step={step:08d}.ckpt")
    whole = (tmp_path / "step=00000010.ckpt").read_bytes()
    (tmp_path / "step=00000015.ckpt").write_bytes(whole[: len(whole) // 2])  # what a non-atomic writer leaves
    (tmp_path / ".step=00000020.ckpt.123.partial").write_bytes(whole[:100])
    (tmp_path / "last.ckpt").symlink_to("step=00000015.ckpt")
    assert ck.newest_checkpoint(tmp_path) == tmp_path / "step=00000010.ckpt"
    assert ck.remove_partial_saves(tmp_path) == [tmp_path / ".step=00000020.ckpt.123.partial"]
    assert ck.newest_checkpoint(tmp_path / "absent") is None


def test_keep_n_keeps_the_newest_n(tmp_path):
    run_zoo(tmp_path / "run", ["model=clip", "trainer.max_steps=9", "callbacks.checkpoint.every_n_train_steps=2",
                               "callbacks.checkpoint.keep=3"])  # fmt: skip
    folder = tmp_path / "run" / "checkpoints"
    # steps 2, 4, 6, 8 and the end of training (9); the newest 3 stay, last.ckpt links the newest
    assert sorted(p.name for p in folder.glob("step=*.ckpt")) == [f"step={s:08d}.ckpt" for s in (6, 8, 9)]
    assert (folder / "last.ckpt").resolve() == (folder / "step=00000009.ckpt").resolve()
    with pytest.raises(ValueError, match="keep at least 1"):
        ck.RunCheckpoint(keep=0)


@pytest.fixture(scope="module")
def llava_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("llava") / "run"
    run_zoo(out, LLAVA)
    return out


def test_checkpoints_hold_the_trainable_state_and_name_the_frozen_parts(llava_run):
    from mmzoo.rundir import load_run

    saved = torch.load(llava_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    full = load_run(llava_run).state_dict()  # what a checkpoint of every weight would hold
    assert {k.split(".")[1] for k in saved["state_dict"]} == {"bridge"}
    assert sum(k.startswith(("model.encoder.", "model.llm.")) for k in full) > 0
    optimized = {id(p) for group in saved["optimizer_states"][0]["param_groups"] for p in group["params"]}
    assert len(optimized) == len(saved["state_dict"])  # the optimizer state covers exactly these
    manifest = saved[FROZEN_MANIFEST]
    assert set(manifest) == {"encoder", "llm"}
    assert all(len(m["sha256"]) == 16 and m["source"] for m in manifest.values())
    assert set(saved[TRAINING_STATE]) == {"rng", "train_losses", "counters"}
    own = sum(v.numel() * v.element_size() for v in saved["state_dict"].values())
    every = sum(v.numel() * v.element_size() for v in full.values())
    assert own < every / 4  # the projector is a small part of this model (figures: the report)


def test_resume_refuses_other_frozen_parts_and_names_them(llava_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(llava_run, run, symlinks=True)
    (run / "metrics.json").unlink()
    # the same frozen parts: the run continues (to a later step)
    metrics = run_zoo(run, [*LLAVA, "trainer.max_steps=3"])
    assert metrics["train"]["resumed_at_step"] == 2 and metrics["train"]["steps"] == 3
    # another seed draws other random frozen parts: the checkpoint was not trained on them
    with pytest.raises(ValueError, match="cannot resume") as refused:
        run_zoo(run, [*LLAVA, "trainer.max_steps=4", "seed=1"])
    message = str(refused.value)
    assert "encoder (checkpoint: built from config (random init)" in message and "llm (" in message
    assert "bridge" not in message  # the trained part is the checkpoint's own


def test_a_frozen_part_source_is_named_by_the_longest_lineage_entry():
    from mmzoo.api import build

    module = build("minigpt4", ["encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null"])
    module.part_sources = {"encoder": "zoo:clip (/cache/zoo/clip-1)", "bridge.qformer": "runs/blip2_stage1/a",
                           "pretrained": "runs/minigpt4/stage1"}  # fmt: skip
    manifest = module.frozen_manifest()
    assert manifest["encoder"]["source"] == "zoo:clip (/cache/zoo/clip-1)"
    assert manifest["bridge.qformer"]["source"] == "runs/blip2_stage1/a"
    assert manifest["llm"]["source"] == "runs/minigpt4/stage1"  # the whole model's source holds the rest
