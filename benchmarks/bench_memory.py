"""Peak memory of a training step per model and stage, optimizer state, activation checkpointing.

    python benchmarks/bench_memory.py [--steps 5] [--configs clip,blip,...] [--time-steps 20]
                                      [--repeats 3] [--threads 1] [OVERRIDES...]

Every model of the zoo at its embedded budget's batch size (``conf/budget/shapes_<model>.yaml``)
with random parts of the zoo's shapes (no zoo run needed; the memory is that of the trained
ones), stepped by ``zoo_steps.BareStep`` (the module's loss, backward, clipping, the AdamW
parameter groups ``configure_optimizers`` makes, the scheduler) on the run's own first batches.

How memory is measured: the CPU has no allocator statistics in torch (``torch.cuda``'s have no
CPU twin, and ``tracemalloc`` sees Python's allocations, not torch's), so each configuration
runs in a fresh subprocess, and its peak is the process's resident set: the kernel's high-water
mark (``VmHWM``) is reset (``/proc/self/clear_refs``) once the module and its batches are
built, and read after ``--steps`` steps; "step peak" is that mark minus the resident set just
before the first step. It holds everything a step adds: gradients, the optimizer's state
(made by the first step), the activations kept for backward, the temporaries. Each
configuration runs twice: with ``MALLOC_MMAP_THRESHOLD_=131072`` ("live": glibc maps every
block over 128 KiB on its own and unmaps it when freed, so the mark follows the live bytes;
steady to a fraction of a percent between runs, but the page faults make steps slower), and
with glibc's defaults ("default": what a run's resident set shows, with the free memory
glibc keeps cached; it varies by ~10% from run to run). Beside it, exact tensor bytes: parameters, trainable ones, optimizer state, and the
activations autograd keeps for backward in one forward (``saved_tensors_hooks``, distinct
storages that are not parameters, as ``tests/components/test_activation_checkpointing.py``).

The optimizer check: the state tensors of ``configure_optimizers``' optimizer after the steps
belong to trainable parameters only (AdamW: ``step``, ``exp_avg``, ``exp_avg_sq`` each), none
to a frozen one.

Activation checkpointing (``++encoder.gradient_checkpointing=true``,
``++llm.gradient_checkpointing=true``) where the part trains: CLIP's vision tower, and LLaVA
at stage 2 (``model.freeze=[encoder]``: projector and LLM train, the stage-2 task mix). Memory
from the subprocesses above; time with both modules (same seed, same weights) in one process,
stepping in turns on the same batches (``--time-steps`` each per repeat), ratio on/off.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from zoo_steps import BareStep, quiet, run_config

from mmzoo.lit.base import kept_for_backward
from mmzoo.run import build

RANDOM = ["encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null"]
STAGE2 = ["model.freeze=[encoder]", "model.tasks=[conversation,vqa,describe]"]  # conf/experiment/llava_stage2.yaml
CONFIGS: dict[str, list[str]] = {
    "clip": ["model=clip"],
    "clip+ckpt": ["model=clip", "++encoder.gradient_checkpointing=true"],
    "blip": ["model=blip"],
    "blip2_stage1": ["experiment=blip2_stage1", "encoder=tiny_clip_vit", "model.pretrained_parts=null"],
    "blip2": ["model=blip2", *RANDOM],
    "instructblip": ["model=instructblip", *RANDOM],
    "llava": ["model=llava", *RANDOM],
    "llava_stage2": ["model=llava", *RANDOM, *STAGE2],
    "llava_stage2+ckpt": ["model=llava", *RANDOM, *STAGE2, "++llm.gradient_checkpointing=true"],
    "minigpt4": ["model=minigpt4", *RANDOM],
}
CHECKPOINTING = {"clip": "clip+ckpt", "llava_stage2": "llava_stage2+ckpt"}  # off -> on
MB = 2**20
LIVE = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # blocks over 128 KiB mapped alone, unmapped when freed


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> None:
    """The kernel's resident high-water mark back to the current resident set (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def prepared(overrides: list[str], steps: int, batches: int, tmp: Path) -> tuple[Any, list[dict[str, Any]], Any]:
    """The module (seed 0), its first training batches, and the config."""
    cfg = run_config(overrides, steps)
    torch.manual_seed(0)
    module, datamodule, _ = build(cfg, tmp)
    datamodule.num_workers = 0
    return module, list(islice(iter(datamodule.train_dataloader()), batches)), cfg


def activation_bytes(module: Any, batch: dict[str, Any]) -> int:
    """Bytes autograd keeps for backward in one forward of the loss (outside checkpointed regions)."""
    with kept_for_backward(module) as kept:
        loss, _ = module.loss(batch)
    loss.backward()
    module.zero_grad(set_to_none=True)
    return sum(kept.values())


def one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one configuration (in its own process)."""
    with tempfile.TemporaryDirectory() as tmp:
        module, batches, cfg = prepared([*CONFIGS[name], *args.overrides], args.steps, args.batches, Path(tmp))
        step = BareStep(module, args.steps, cfg.trainer.get("gradient_clip_val"))
        # the optimizer the Trainer would get: the same parameters as the bare step's
        module.trainer = SimpleNamespace(estimated_stepping_batches=args.steps)
        configured = module.configure_optimizers()
        configured = configured["optimizer"] if isinstance(configured, dict) else configured
        assert {id(p) for g in configured.param_groups for p in g["params"]} == {id(p) for p in step.params}
        module.trainer = None
        gc.collect()
        rss_before = status_kb("VmRSS")
        reset_peak()
        times = []
        for i in range(args.steps):
            start = time.perf_counter()
            step.step(batches[i % len(batches)])
            times.append(time.perf_counter() - start)
        peak = status_kb("VmHWM")
        params = list({id(p): p for p in module.parameters()}.values())
        trainable = {id(p) for p in params if p.requires_grad}
        state = step.optimizer.state
        state_tensors = [t for s in state.values() for t in s.values() if torch.is_tensor(t)]
        return {
            "name": name,
            "batch": int(cfg.data.batch_size),
            "params": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
            "param_tensors": len(params),
            "trainable_tensors": len(trainable),
            "param_bytes": sum(p.numel() * p.element_size() for p in params),
            "trainable_bytes": sum(p.numel() * p.element_size() for p in params if p.requires_grad),
            "with_state": len(state),
            "frozen_with_state": sum(1 for p in state if id(p) not in trainable),
            "trainable_without_state": len(trainable - {id(p) for p in state}),
            "state_tensors": len(state_tensors),
            "state_bytes": sum(t.numel() * t.element_size() for t in state_tensors),
            "activation_bytes": activation_bytes(module, batches[0]),
            "rss_before_kb": rss_before,
            "step_peak_kb": peak - rss_before,
            "step_ms": 1000 * statistics.median(times[1:] or times),
        }


def time_pair(off: str, args: argparse.Namespace) -> list[float]:
    """Checkpointing on / off step time, the two modules taking turns on the same batches."""
    on = CHECKPOINTING[off]
    with tempfile.TemporaryDirectory() as tmp:
        total = args.time_steps * (args.repeats + 1)
        mod_off, batches, cfg = prepared([*CONFIGS[off], *args.overrides], total, args.batches, Path(tmp) / "off")
        mod_on, _, _ = prepared([*CONFIGS[on], *args.overrides], total, args.batches, Path(tmp) / "on")
        mod_on.load_state_dict(mod_off.state_dict())
        clip = cfg.trainer.get("gradient_clip_val")
        steps = {"off": BareStep(mod_off, total, clip), "on": BareStep(mod_on, total, clip)}
        for batch in batches[:2]:  # warm-up
            for s in steps.values():
                s.step(batch)
        ratios = []
        for repeat in range(args.repeats):
            spent = {"off": 0.0, "on": 0.0}
            for i in range(args.time_steps):
                batch = batches[i % len(batches)]
                for way in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    start = time.perf_counter()
                    steps[way].step(batch)
                    spent[way] += time.perf_counter() - start
            ratios.append(spent["on"] / spent["off"])
            print(f"  {off}: repeat {repeat}: checkpointing off {1000 * spent['off'] / args.time_steps:6.1f} ms/step | "
                  f"on {1000 * spent['on'] / args.time_steps:6.1f} ms/step | on/off {ratios[-1]:.3f}x", flush=True)
        return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="steps per configuration for the memory peak")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches, cycled")
    parser.add_argument("--configs", type=lambda s: s.split(","), default=list(CONFIGS), help=",".join(CONFIGS))
    parser.add_argument("--time-steps", type=int, default=20, help="checkpointing timing: steps per way and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--time", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="more config overrides for every configuration")
    args = parser.parse_args()
    quiet(args.threads)
    if args.one:
        print("RESULT " + json.dumps(one(args.one, args)), flush=True)
        return
    if args.time:
        print("RESULT " + json.dumps(time_pair(args.time, args)), flush=True)
        return

    forward = [f"--steps={args.steps}", f"--batches={args.batches}", f"--time-steps={args.time_steps}",
               f"--repeats={args.repeats}", f"--threads={args.threads}"]  # fmt: skip

    def child(flag: str, name: str, env: dict[str, str] | None = None) -> Any:
        done = subprocess.run([sys.executable, __file__, *forward, flag, name, "--", *args.overrides],
                              capture_output=True, text=True, env={**os.environ, **(env or {})})  # fmt: skip
        lines = done.stdout.splitlines()
        for line in lines:
            if line.startswith("  "):
                print(line, flush=True)
        result = [line for line in lines if line.startswith("RESULT ")]
        if done.returncode or not result:
            print(f"{name}: failed (exit {done.returncode})\n{done.stderr[-3000:]}", flush=True)
            return None
        return json.loads(result[-1][len("RESULT "):])

    print(f"threads={args.threads} steps={args.steps} batches={args.batches} overrides={args.overrides}; memory: "
          f"resident set high-water mark of a fresh process per configuration (VmHWM reset after building), "
          f"live (MALLOC_MMAP_THRESHOLD_=131072) and glibc default", flush=True)
    print(f"{'configuration':18s} {'batch':>5s} {'params':>8s} {'trainable':>9s} {'ms/step':>8s} {'RSS built':>9s} "
          f"{'peak live':>9s} {'default':>9s} {'params+grads+state':>18s} {'activations':>11s}  optimizer state",
          flush=True)  # fmt: skip
    results: dict[str, dict[str, Any]] = {}
    for name in args.configs:
        r, default = child("--one", name, LIVE), child("--one", name)
        if r is None or default is None:
            continue
        r["default_peak_kb"], r["step_ms"] = default["step_peak_kb"], default["step_ms"]
        results[name] = r
        tensors = (r["param_bytes"] + r["trainable_bytes"] + r["state_bytes"]) / MB
        only_trainable = r["frozen_with_state"] == 0
        print(f"{name:18s} {r['batch']:5d} {r['params']:8,d} {r['trainable']:9,d} {r['step_ms']:8.1f} "
              f"{r['rss_before_kb'] / 1024:6.0f} MB {r['step_peak_kb'] / 1024:6.1f} MB {r['default_peak_kb'] / 1024:6.1f} MB "
              f"{tensors:15.2f} MB "
              f"{r['activation_bytes'] / MB:8.1f} MB  {r['with_state']}/{r['trainable_tensors']} trainable tensors "
              f"with state, {r['frozen_with_state']} of {r['param_tensors'] - r['trainable_tensors']} frozen; "
              f"{r['state_tensors']} state tensors, {r['state_bytes'] / max(r['trainable_bytes'], 1):.2f}x trainable "
              f"bytes ({'only trainable: ok' if only_trainable else 'FROZEN PARAMETERS HOLD STATE'})", flush=True)
    for off, on in CHECKPOINTING.items():
        if off not in results or on not in results:
            continue
        a, b = results[off], results[on]
        ratios = child("--time", off) or [float("nan")]
        print(f"checkpointing {off}: step peak live {a['step_peak_kb'] / 1024:.1f} -> {b['step_peak_kb'] / 1024:.1f} MB "
              f"({b['step_peak_kb'] / a['step_peak_kb']:.2f}x), default {a['default_peak_kb'] / 1024:.1f} -> "
              f"{b['default_peak_kb'] / 1024:.1f} MB | activations kept {a['activation_bytes'] / MB:.1f} -> "
              f"{b['activation_bytes'] / MB:.1f} MB ({b['activation_bytes'] / a['activation_bytes']:.2f}x) | time on/off "
              f"median {statistics.median(ratios):.3f}x [{min(ratios):.3f}-{max(ratios):.3f}] over {len(ratios)} "
              f"repeats", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
