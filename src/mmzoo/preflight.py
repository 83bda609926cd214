"""Checks a run config before anything heavy happens, so a bad config costs seconds, not a run.

``mmzoo.run`` calls ``check`` first: before shards are generated, a tokenizer is trained, a
zoo part is made or a model is built. Every check reads the composed config (and, for parts
taken from other runs, those runs' ``config.yaml`` or the zoo recipe's composed config, never
their weights), so the whole pass takes milliseconds to a second. Each problem names its
fix; all problems are reported at once, in one ``ConfigError``.

What is checked: the stage; values a preset leaves to the user (``???``: a stage-2
experiment's source run, ``data=folder``'s shards); that training data exists; that the
recipe leaves something to train; that the bridge has the Q-Former ``bridge.frozen`` freezes;
that the template holds its ``<image>`` placeholder; that parts, weights and runs they come
from agree in shape (a part's size keys next to ``from_run``, ``pretrained=<run>``,
``model.pretrained_parts``); and the run options (``nonfinite``, checkpoint ``keep``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mmzoo import rundir
from mmzoo.data.templates import IMAGE_PLACEHOLDER

log = logging.getLogger(__name__)
STAGES = ("fit", "test")
NONFINITE = ("stop", "skip")
ZOO = "zoo:"
# leaves of a part's config that decide the shapes of its weights (names used by transformers,
# open_clip, timm and the zoo's bridges): two parts that differ in one cannot share weights
SHAPE_KEYS = frozenset({
    "model_type", "name_or_path", "model_name", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "image_size", "patch_size", "width", "layers", "head_width",
    "embed_dim", "img_size", "depth", "num_heads", "d_model", "d_ff", "d_kv", "num_layers", "num_decoder_layers",
    "num_queries", "hidden_dim", "vocab_size", "max_position_embeddings", "cross_attention_frequency",
})


class ConfigError(ValueError):
    """An impossible config, found before any work; the message lists each problem and its fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"this config cannot run (nothing was started):\n{lines}")


def check(cfg: DictConfig) -> DictConfig:
    """``cfg`` with deprecated spellings replaced; raises ``ConfigError`` naming every problem."""
    cfg = _deprecated(cfg)
    missing = _missing(cfg)
    if missing:  # the other checks would trip over the unset values
        raise ConfigError(missing)
    problems = [
        *_stage(cfg), *_options(cfg), *_data(cfg), *_trainable(cfg), *_bridge(cfg), *_template(cfg), *_sources(cfg),
    ]
    if problems:
        raise ConfigError(problems)
    return cfg


# ---- the checks ------------------------------------------------------------------------
def _deprecated(cfg: DictConfig) -> DictConfig:
    if not cfg.get("init_from"):
        return cfg
    if cfg.get("pretrained"):
        raise ConfigError(["give `pretrained` only (`init_from` is its deprecated spelling)"])
    log.warning("`init_from` is deprecated: use `pretrained=%s` (same meaning)", cfg.init_from)
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.pretrained, cfg.init_from = cfg.init_from, None
    return cfg


def _experiment(cfg: DictConfig) -> str | None:
    """The ``experiment`` group choice (kept under ``choices`` by ``compose_config``, else by Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    picked = cfg.get("choices") or (HydraConfig.get().runtime.choices if HydraConfig.initialized() else {})
    experiment = picked.get("experiment")
    return str(experiment) if experiment else None


def _missing(cfg: DictConfig) -> list[str]:
    """Values the presets leave to the user (``???``), each with what to give."""
    experiment = _experiment(cfg)
    problems = []
    keys = set(_missing_keys(OmegaConf.to_container(cfg, resolve=False)))
    keys |= {k for k in _required_by_experiment(experiment) if OmegaConf.select(cfg, k, default=None) is None}
    for key in sorted(keys):
        if key.startswith(("hydra.", "choices.")):
            continue
        if key == "pretrained":
            stage2 = experiment is not None and "stage2" in experiment  # only a stage 2 names its stage 1
            stage1 = experiment.replace("stage2_lora", "stage1").replace("stage2", "stage1") if stage2 else ""
            problems.append(
                f"{f'experiment={experiment}' if experiment else 'this stage'} starts from an earlier run: add "
                f"pretrained=<run dir>{f' (a run of experiment={stage1})' if stage1 else ''}"
            )
        elif key == "stage1":
            problems.append(
                f"{f'experiment={experiment}' if experiment else 'this stage'} takes the Q-Former of a BLIP-2 "
                "stage-1 run: add stage1=<run dir> (a run of experiment=blip2_stage1)"
            )
        elif key.startswith("data."):
            name = cfg.data.get("name", "this data") if isinstance(cfg.get("data"), DictConfig) else "this data"
            split = key.removeprefix("data.")
            problems.append(
                f"data={name} needs {key}=<shard folder, pattern or list> (make shards from your images and captions "
                f"with `python -m mmzoo.data.shards folder|table ...`; see --help) for its {split} split"
            )
        else:
            problems.append(f"{key} has no value (it is '???' in its preset): give {key}=...")
    return problems


def _missing_keys(tree: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys whose value is ``???`` (interpolations to them are not followed)."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        if value == "???":
            yield f"{prefix}{key}"
        else:
            yield from _missing_keys(value, f"{prefix}{key}.")


def _required_by_experiment(name: str | None, seen: frozenset[str] = frozenset()) -> set[str]:
    """Keys an experiment preset (or one it extends) sets to ``???``. Composing loses them where the
    main config already has a value (``pretrained: null``: merging ``???`` over it keeps ``null``),
    so they are read from the preset files themselves."""
    from mmzoo.presets import load_preset, presets

    if not name or name in seen or name not in presets("experiment"):
        return set()
    preset = load_preset("experiment", name)
    keys = {k for k in _missing_keys({k: v for k, v in preset.items() if k != "defaults"})}
    for entry in preset.get("defaults") or []:
        if isinstance(entry, str) and not entry.startswith(("/", "_self_")):  # another experiment it extends
            keys |= _required_by_experiment(entry, seen | {name})
    return keys


def _stage(cfg: DictConfig) -> list[str]:
    if cfg.get("stage") not in STAGES:
        return [f"stage={cfg.get('stage')!r}: valid stages are 'fit' (train, then evaluate) and 'test'"]
    return []


def _options(cfg: DictConfig) -> list[str]:
    problems = []
    if cfg.get("nonfinite", "stop") not in NONFINITE:
        problems.append(f"nonfinite={cfg.nonfinite!r}: valid are 'stop' (end the run at a NaN/inf loss) and 'skip'")
    keep = OmegaConf.select(cfg, "callbacks.checkpoint.keep", default=None)
    if keep is not None and int(keep) < 1:
        problems.append(f"callbacks.checkpoint.keep={keep}: keep at least 1 checkpoint (the one a resume starts from)")
    return problems


def _data(cfg: DictConfig) -> list[str]:
    """The shards a stage reads exist (remote urls are taken on trust; embedded data is generated)."""
    from mmzoo.data.webdata import expand_urls

    data = cfg.get("data")
    if not isinstance(data, DictConfig):
        return []
    problems = []
    for split in ("train", "val", "test"):
        if split not in data:
            continue
        spec = data.get(split)
        needed = (split == "train" and cfg.stage == "fit") or split == "test"
        if spec is None:
            if needed:
                problems.append(f"data.{split} is null: give data.{split}=<shard folder, pattern or list>")
            continue
        try:
            expand_urls(_plain(spec))
        except FileNotFoundError as err:
            problems.append(f"data.{split}: {err} (make shards with `python -m mmzoo.data.shards`)")
    return problems


def _model_parts(cfg: DictConfig) -> list[str]:
    model = cfg.get("model")
    return [p for p in rundir.PARTS if isinstance(model, DictConfig) and model.get(p) is not None]


def _trainable(cfg: DictConfig) -> list[str]:
    """Training needs something the recipe leaves unfrozen (or LoRA adapters on a frozen LLM)."""
    if cfg.stage != "fit":
        return []
    parts = _model_parts(cfg)
    freeze = [str(f) for f in (cfg.model.get("freeze") or [])]
    if not parts or cfg.model.get("lora") or any(p not in freeze for p in parts):
        return []
    return [
        f"model.freeze={freeze} freezes every part of this model ({', '.join(parts)}): nothing would train. "
        f"Leave one out (e.g. model.freeze=[{', '.join(parts[:-1])}]), add LoRA (model.lora=...), "
        "or evaluate without training (stage=test)"
    ]


def _bridge(cfg: DictConfig) -> list[str]:
    bridge = cfg.get("bridge")
    if not isinstance(bridge, DictConfig) or bridge.get("from_run") or "bridge" not in _model_parts(cfg):
        return []
    if bridge.get("frozen") and bridge.get("qformer") is None:
        return [
            "bridge.frozen=true freezes the bridge's Q-Former, and this bridge has none: nothing to freeze. "
            "Drop bridge.frozen, or put a Q-Former in front (bridge=qformer, or bridge.qformer={...})"
        ]
    return []


def _template(cfg: DictConfig) -> list[str]:
    """The template's image text holds exactly one ``<image>`` (where the visual tokens go) and the
    rest of the template none (each prompt must carry exactly one)."""
    template = cfg.model.get("template") if isinstance(cfg.get("model"), DictConfig) else None
    if not isinstance(template, DictConfig):
        return []
    name = template.get("name", "this template")
    image = str(template.get("image") or "")
    problems = []
    if image.count(IMAGE_PLACEHOLDER) != 1:
        problems.append(
            f"template {name}: template.image={image!r} must hold the {IMAGE_PLACEHOLDER} placeholder exactly once "
            f"(the visual tokens go where it stands), e.g. template.image='<Img>{IMAGE_PLACEHOLDER}</Img>'"
        )
    for key in ("system", "user", "assistant", "turn_sep", "end_of_turn"):
        if IMAGE_PLACEHOLDER in str(template.get(key) or ""):
            problems.append(
                f"template {name}: template.{key} holds {IMAGE_PLACEHOLDER}, which only template.image may: every "
                f"prompt would carry two images' placeholders. Remove it from template.{key}"
            )
    return problems


# ---- parts from other runs: do their shapes agree? -------------------------------------
def _plain(value: Any) -> Any:
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _shape_leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of the shape-deciding leaves of a part's config (tokenizers skipped)."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("tokenizer", "from_run", *rundir.RUNTIME_KEYS):
            continue
        if isinstance(value, dict):
            yield from _shape_leaves(value, f"{prefix}{key}.")
        elif key in SHAPE_KEYS and value is not None:
            yield f"{prefix}{key}", value


def _mismatches(ours: Any, theirs: Any) -> list[tuple[str, Any, Any]]:
    """Shape keys present in both part configs whose values differ."""
    try:
        mine, other = dict(_shape_leaves(_plain(ours))), dict(_shape_leaves(_plain(theirs)))
    except Exception:  # an unresolvable interpolation: the build will say what is wrong
        return []
    return [(k, mine[k], other[k]) for k in sorted(mine.keys() & other.keys()) if mine[k] != other[k]]


def _source_config(cfg: DictConfig, source: str) -> DictConfig | None:
    """The config a part comes from: a run directory's, or a zoo recipe's as composed for ``cfg``;
    None for real checkpoints (hub ids, transformers folders), whose shapes the build checks."""
    if source.startswith(ZOO):
        from mmzoo import zoo

        return zoo.recipe_config(source[len(ZOO):], cfg)
    if (Path(source) / rundir.CONFIG_FILE).is_file():
        return rundir.read_config(source)
    return None


def _architecture(cfg: DictConfig, part: str, depth: int = 0) -> Any:
    """The config that decides ``part``'s shapes: its own, or that of the run it comes from."""
    node = cfg.get(part)
    if not isinstance(node, DictConfig) or not node.get("from_run") or depth > 3:
        return node
    source = _source_config(cfg, str(node.from_run))
    return None if source is None else _architecture(source, part, depth + 1)


def _sources(cfg: DictConfig) -> list[str]:
    problems = []
    for part in rundir.PARTS:  # <part>.from_run: keys beside it cannot resize that run's part
        node = cfg.get(part)
        if not isinstance(node, DictConfig) or not node.get("from_run"):
            continue
        source = str(node.from_run)
        try:
            theirs = _architecture(cfg, part)
        except (FileNotFoundError, ValueError) as err:
            problems.append(f"{part}.from_run={source}: {err}")
            continue
        if theirs is None and not source.startswith(ZOO) and not Path(source).exists():
            problems.append(f"{part}.from_run={source}: no such run directory (a run of mmzoo, or zoo:<recipe>)")
        elif theirs is not None:
            problems += [
                f"{part}.from_run={source} is that run's {part} as trained, with {part}.{k}={other}; "
                f"{part}.{k}={mine} cannot resize it: drop that override, or train a new {part} (without from_run)"
                for k, mine, other in _mismatches(node, theirs)
            ]
    pretrained = cfg.get("pretrained")
    if pretrained:
        problems += _pretrained_shapes(cfg, str(pretrained))
    sources = rundir.flatten_paths(_plain(cfg.model.get("pretrained_parts") or {})) if "model" in cfg else {}
    for path, source in sources.items():
        problems += _part_source_shapes(cfg, path, source)
    return problems


def _pretrained_shapes(cfg: DictConfig, source: str) -> list[str]:
    try:
        theirs = _source_config(cfg, source)
    except (FileNotFoundError, ValueError) as err:
        return [f"pretrained={source}: {err}"]
    if theirs is None:
        return []
    problems = []
    for part in _model_parts(cfg):
        try:
            mine, other = _architecture(cfg, part), _architecture(theirs, part)
        except (FileNotFoundError, ValueError):
            continue  # reported with that part's from_run
        problems += [
            f"pretrained={source} was trained with {part}.{k}={b}, this config has {part}.{k}={a}: its weights "
            f"cannot load. Use that run's parts (see its {rundir.CONFIG_FILE}), or start without pretrained"
            for k, a, b in _mismatches(mine, other)
        ]
    return problems


def _part_source_shapes(cfg: DictConfig, path: str, source: str) -> list[str]:
    part, _, rest = path.partition(".")
    if part not in rundir.PARTS:
        return []
    try:
        theirs = _source_config(cfg, source)
        mine = _architecture(cfg, part)
    except (FileNotFoundError, ValueError) as err:
        return [f"model.pretrained_parts.{path}={source}: {err}"]
    if theirs is None:
        if not source.startswith(ZOO) and not Path(source).exists():
            return [f"model.pretrained_parts.{path}={source}: no such run directory"]
        return []
    other = _architecture(theirs, part)
    if rest:
        mine = OmegaConf.select(mine, rest) if OmegaConf.is_config(mine) else None
        other = OmegaConf.select(other, rest) if OmegaConf.is_config(other) else None
    if mine is None or other is None:
        return []
    return [
        f"model.pretrained_parts.{path}={source} has {path}.{k}={b}, this config {path}.{k}={a}: its weights cannot "
        f"load. Make {path} as in that run (see its {rundir.CONFIG_FILE}), or take it from a run that matches"
        for k, a, b in _mismatches(mine, other)
    ]
