"""Provenance: each field names what it claims (code, config, data, libraries, device, memory)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mmzoo.provenance import (
    config_hash,
    data_identity,
    device_description,
    git_state,
    library_versions,
    peak_memory,
    provenance,
    reset_peak_memory,
)


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="no git binary")
def test_git_state_names_the_commit_and_sees_edits_and_new_files(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == {"commit": head, "dirty": False}
    assert git_state(repo / "a.py") == {"commit": head, "dirty": False}  # a file inside the tree

    (repo / "a.py").write_text("x = 2\n")
    assert git_state(repo) == {"commit": head, "dirty": True}
    _git(repo, "checkout", "a.py")
    (repo / "b.py").write_text("y = 1\n")  # untracked, not ignored: code that may run
    assert git_state(repo)["dirty"] is True
    (repo / ".gitignore").write_text("b.py\n.gitignore\n")
    assert git_state(repo)["dirty"] is False


def test_git_state_outside_a_repository_is_null(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}


def test_config_hash_ignores_key_order_and_volatile_keys_but_not_values():
    a = {"model": {"lr": 0.001, "depth": 2}, "seed": 1, "resume": "/runs/a", "trainer": {"max_steps": 10}}
    b = {"trainer": {"max_steps": 10}, "resume": "/elsewhere", "seed": 1, "model": {"depth": 2, "lr": 0.001}}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) == config_hash(OmegaConf.create(b))  # DictConfig or dict alike
    assert len(config_hash(a)) == 64
    assert config_hash(a) != config_hash({**a, "model": {"lr": 0.002, "depth": 2}})
    assert config_hash(a) != config_hash({**a, "trainer": {"max_steps": "10"}})  # types count
    assert config_hash(a) != config_hash({**a, "seed": 2})
    assert config_hash(a, exclude=["seed"]) == config_hash({**a, "seed": 2}, exclude=["seed"])


def test_config_hash_resolves_interpolations():
    cfg = OmegaConf.create({"width": 8, "model": {"dim": "${width}"}})
    assert config_hash(cfg) == config_hash({"width": 8, "model": {"dim": 8}})


def test_data_identity_counts_samples_and_hashes_content(tmp_path, shapes_writer):
    test_a = shapes_writer(tmp_path / "a", 20, 10, split="test")
    test_b = shapes_writer(tmp_path / "b", 20, 10, split="train")  # other scenes, same names
    ident = data_identity(str(test_a), content_hash=True)
    assert ident["shards"] == ["000000.tar", "000001.tar"]
    assert ident["samples"] == 20
    assert len(ident["content_hash"]) == 64
    other = data_identity(str(test_b), content_hash=True)
    assert other["shards"] == ident["shards"] and other["content_hash"] != ident["content_hash"]

    copy = shutil.copytree(test_a, tmp_path / "copy")  # same bytes elsewhere: same data
    assert data_identity(str(copy), content_hash=True)["content_hash"] == ident["content_hash"]
    reordered = [str(copy / "000001.tar"), str(copy / "000000.tar")]
    assert data_identity(reordered, content_hash=True)["content_hash"] == ident["content_hash"]
    assert data_identity(str(test_a))["content_hash"] is None  # training data: named, not hashed


def test_data_identity_without_manifest_has_unknown_count_and_remote_no_hash(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"not really a tar")
    ident = data_identity([str(tmp_path / "x.tar")], content_hash=True)
    assert ident["samples"] is None and ident["content_hash"] is not None
    remote = data_identity(["https://host/data/000000.tar"], content_hash=True)
    assert remote == {"shards": ["https://host/data/000000.tar"], "samples": None, "content_hash": None}


def test_data_identity_hashes_ten_megabytes_quickly(tmp_path):
    for i in range(5):
        (tmp_path / f"{i:06d}.tar").write_bytes(os.urandom(2 << 20))
    started = time.perf_counter()
    data_identity(str(tmp_path), content_hash=True)
    assert time.perf_counter() - started < 2.0  # ~30 ms unloaded; generous for a shared CPU


@pytest.mark.slow  # imports lightning and transformers
def test_library_versions_are_the_imported_ones():
    import lightning
    import transformers

    import mmzoo

    versions = library_versions()
    assert torch.__version__.startswith(versions["torch"])  # "2.x.y" vs "2.x.y+cpu"
    assert versions["lightning"] == lightning.__version__
    assert versions["transformers"] == transformers.__version__
    assert versions["mmzoo"] == mmzoo.__version__
    assert versions["python"] == ".".join(map(str, os.sys.version_info[:3]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="describes the CPU only without a GPU")
def test_device_description_names_cpu_and_usable_cores():
    text = device_description()
    assert text.endswith(f", {len(os.sched_getaffinity(0))} cores")
    assert len(text) > len(", 1 cores")


def _current_rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


@pytest.mark.skipif(not Path("/proc/self/statm").is_file(), reason="needs Linux /proc")
def test_peak_memory_is_at_least_what_is_resident_now():
    block = bytearray(b"\x01") * (200 << 20)  # written, hence resident
    now = _current_rss_mb()
    peak = peak_memory()
    assert peak["cpu_rss_mb"] >= now - 1 and now > 200
    del block
    if not torch.cuda.is_available():
        assert peak["gpu_max_allocated_mb"] is None
    else:
        x = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")  # 64 MiB
        assert peak_memory()["gpu_max_allocated_mb"] >= 64
        del x


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs")
def test_reset_peak_memory_forgets_what_was_freed_before():
    block = bytearray(b"\x01") * (300 << 20)  # written, hence resident; then returned to the OS
    del block
    before = peak_memory()["cpu_rss_mb"]
    assert reset_peak_memory() is True
    after = peak_memory()["cpu_rss_mb"]
    assert after < before - 200  # a sweep's second job no longer reports the first one's peak
    assert after >= _current_rss_mb() - 1


def test_provenance_tells_seeds_of_one_config_apart_yet_groups_them(tmp_path, shapes_writer):
    shards = shapes_writer(tmp_path / "test", 10, 10, split="test")
    config = {"model": {"name": "llava"}, "seed": 0}
    p0 = provenance(config, train_urls=str(shards), eval_urls=str(shards), repo=tmp_path)
    p1 = provenance({**config, "seed": 1}, eval_urls=str(shards), repo=tmp_path)
    assert set(p0) == {"git", "config_hash", "config_hash_without_seed", "versions", "device",
                       "train_data", "eval_data"}
    assert p0["config_hash"] != p1["config_hash"]
    assert p0["config_hash_without_seed"] == p1["config_hash_without_seed"]
    assert p0["eval_data"]["content_hash"] and p0["train_data"]["content_hash"] is None
    assert p1["train_data"] is None and p0["git"] == {"commit": None, "dirty": None}


# ---- a real tiny run, end to end ----------------------------------------------------------
def _tree_state() -> tuple[str, bool]:
    source = Path(mmzoo_source())
    head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True)
    status = subprocess.run(["git", "-C", str(source), "status", "--porcelain"], capture_output=True, text=True)
    return head.stdout.strip(), bool(status.stdout.strip())


def mmzoo_source() -> str:
    import mmzoo

    return str(Path(mmzoo.__file__).parent)


def _content_hash(paths: list[str]) -> str:
    """The evaluation split's identity computed here independently: sha256 over sorted shard sha256s."""
    import hashlib

    shards = sorted(hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths)
    return hashlib.sha256("\n".join(shards).encode()).hexdigest()


@pytest.mark.slow  # one tiny CLIP run (5 steps) on the session's tiny CLIP encoder
@pytest.mark.skipif(shutil.which("git") is None, reason="no git binary")
def test_a_real_run_records_its_provenance_and_the_leaderboard_shows_it(tmp_path, clip_run):
    import json

    import lightning
    import transformers

    from mmzoo.compare.records import collect
    from mmzoo.data.shards import ensure_shapes
    from mmzoo.leaderboard import main
    from mmzoo.provenance import VOLATILE_KEYS
    from tests.conftest import TINY_DATA, run_zoo

    sizes = {o.split("=")[0]: int(o.split("=")[1]) for o in TINY_DATA if o.split("=")[1].isdigit()}
    before = _tree_state()
    if not before[0]:
        pytest.skip("mmzoo is not running from a git work tree")
    run_dir = tmp_path / "runs" / "clip"
    run_zoo(run_dir, ["model=clip", f"encoder.from_run={clip_run}", "trainer.max_steps=5", "seed=3"])
    after = _tree_state()
    record = json.loads((run_dir / "metrics.json").read_text())
    prov = record["provenance"]

    # code: the commit of mmzoo's own tree and whether it had uncommitted changes
    assert (prov["git"]["commit"], prov["git"]["dirty"]) in {before, after}
    # config: the hash of exactly the config.yaml written beside it; the seed-free hash groups seeds
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert prov["config_hash"] == config_hash(saved)
    assert prov["config_hash_without_seed"] == config_hash(saved, (*VOLATILE_KEYS, "seed"))
    assert prov["config_hash"] != prov["config_hash_without_seed"] and saved.seed == 3
    # data: the shards this run read, with sample counts; the evaluation split also by content
    splits = ensure_shapes(**{k: sizes[f"data.{k}"] for k in ("train_size", "test_size", "samples_per_shard")},
                           image_size=sizes["data.image_size"])
    assert prov["train_data"] == {"shards": sorted(Path(p).name for p in splits["train"]),
                                  "samples": sizes["data.train_size"], "content_hash": None}
    assert len(prov["train_data"]["shards"]) == sizes["data.train_size"] // sizes["data.samples_per_shard"]
    assert prov["eval_data"] == {"shards": sorted(Path(p).name for p in splits["test"]),
                                 "samples": sizes["data.test_size"], "content_hash": _content_hash(splits["test"])}
    assert record["eval"]["samples"] == sizes["data.test_size"]  # every test sample was evaluated
    # libraries, device, lineage, memory
    assert prov["versions"]["transformers"] == transformers.__version__
    assert prov["versions"]["lightning"] == lightning.__version__
    assert torch.__version__.startswith(prov["versions"]["torch"])
    assert prov["device"] == device_description()
    assert record["lineage"] == {"encoder": str(clip_run)}
    assert record["memory"]["cpu_rss_mb"] > 50 and record["train"]["steps"] == 5

    # the leaderboard shows each of them
    (run,) = collect(tmp_path / "runs").runs
    assert run.training == "trained" and run.eval_data == (prov["eval_data"]["content_hash"], sizes["data.test_size"])
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert (f"## retrieval models, evaluation data {prov['eval_data']['content_hash'][:12]} "
            f"({sizes['data.test_size']} samples evaluated, 1 shard(s))") in md
    row = next(line for line in md.splitlines() if line.startswith("| 1 | clip |"))
    commit = prov["git"]["commit"][:8] + (" +dirty" if prov["git"]["dirty"] else "")
    assert f"| {commit} | {prov['config_hash_without_seed'][:10]} |" in row
    assert f"| {sizes['data.train_size']:,} in {len(prov['train_data']['shards'])} shard(s) |" in row
    assert f"| {prov['device']} |" in row and f"torch {prov['versions']['torch']}" in row
    assert f"encoder←{'/'.join(clip_run.parts[-2:])}" in row and "trained, 5 steps" in row
