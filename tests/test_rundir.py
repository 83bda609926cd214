"""Run directories: parts reused by name across runs, tokenizers travel with the run."""

from __future__ import annotations

import shutil

import pytest
import torch

from mmzoo.api import build, compose_config, from_pretrained
from mmzoo.rundir import read_config, read_weights, resolve_parts


@pytest.mark.slow
def test_encoder_from_run_reuses_the_trained_tower(clip_run):
    module = build("llava", [f"encoder.from_run={clip_run}", "llm=tiny_llama"])
    trained = read_weights(clip_run, "encoder.")
    for key, value in module.model.encoder.state_dict().items():
        assert torch.equal(value, trained[key]), key
    # the runtime keys LLaVA sets beside from_run still apply to the reused tower
    assert module.model.encoder.layer == -2 and module.model.encoder.tokens == "patch"


@pytest.mark.slow
def test_saved_config_is_self_contained_and_runs_can_move(clip_run, tmp_path):
    cfg = compose_config(["model=llava", f"encoder.from_run={clip_run}", "llm=tiny_llama"])
    _, saved = resolve_parts(cfg)
    assert "from_run" not in saved.encoder and saved.lineage.encoder == str(clip_run)
    assert saved.encoder.tokens == "patch"

    moved = tmp_path / "moved"
    shutil.copytree(clip_run, moved)
    assert read_config(moved).text.tokenizer.pretrained_model_name_or_path == str((moved / "tokenizers/text").resolve())
    a, b = from_pretrained(clip_run), from_pretrained(moved)
    px = torch.randn(2, 3, 32, 32)
    assert torch.equal(a.model.encode_image(px), b.model.encode_image(px))


def test_missing_run_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        build("llava", [f"encoder.from_run={tmp_path}", "llm=tiny_llama"])


@pytest.mark.parametrize("llm", ["tiny_llama", "tiny_opt", "tiny_gpt2", "tiny_t5"])
def test_every_tiny_llm_reloads_from_its_saved_weights(llm, tmp_path):
    """safetensors stores tied weights (GPT-2, OPT, T5 embeddings and heads) once; loading
    strictly must still fill every name."""
    from mmzoo.rundir import load_weights, save_weights, tied_names

    overrides = ["encoder=tiny_clip_vit", f"llm={llm}", "model.pretrained_parts=null"]
    torch.manual_seed(0)
    saved = build("llava", overrides)
    save_weights(saved.model, tmp_path)
    torch.manual_seed(1)
    fresh = build("llava", overrides)
    load_weights(fresh.model, read_weights(tmp_path), "test")  # strict: would name any missing key
    for key, value in saved.model.state_dict().items():
        assert torch.equal(fresh.model.state_dict()[key], value), key
    if llm != "tiny_llama":  # these tie input and output embeddings: the case that failed before
        assert tied_names(fresh.model)


def test_a_validation_split_is_validated_during_training(tmp_path):
    from tests.conftest import run_zoo, write_shapes

    val = write_shapes(tmp_path / "val", 64, 64, split="test")
    metrics = run_zoo(tmp_path / "run", [f"data.val={val}", "trainer.max_steps=4", "trainer.val_check_interval=2",
                                         "trainer.check_val_every_n_epoch=null"])
    logged = (tmp_path / "run" / "logs" / "metrics.csv").read_text()
    assert "val/loss" in logged.splitlines()[0] and metrics["train"]["steps"] == 4


def _fsdp_rank(rank: int, world: int, port: int, out: str) -> None:
    """One rank: shard a tiny zoo CLIP with FSDP, gather the full state on every rank (a
    collective, as run.py calls it), rank 0 writes the run's weights."""
    import os

    import torch.distributed as dist
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from mmzoo.rundir import save_weights

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = build("clip").model
    sharded = FSDP(model, device_id=torch.device("cpu"), use_orig_params=True)
    with FSDP.state_dict_type(sharded, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
        state = sharded.state_dict()
    if rank == 0:
        save_weights(state, out)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp_sharded_weights_are_gathered_and_saved(tmp_path):
    """Lightning refuses its FSDP strategy on CPU, so this drives torch's FSDP directly on two
    gloo processes: the full state dict gathered from the shards, saved by the run's writer,
    reloads into an unsharded model equal to the original. (Lightning's FSDPStrategy itself,
    on GPUs, could not be tested here.)"""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_fsdp_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    reference = build("clip").model
    fresh = build("clip", ["model.init_temperature=0.5"]).model
    from mmzoo.rundir import load_weights

    load_weights(fresh, read_weights(tmp_path), "fsdp run")
    for key, value in reference.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
