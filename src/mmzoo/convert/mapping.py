"""Name mappings from a reference checkpoint to the zoo's parts, and filling by them.

A family's mapping is a small table of ``Rule``s: a regular expression over reference
keys and the zoo key(s) it fills. ``fill`` applies it strictly: a reference tensor no rule
claims is an error (nothing is dropped silently), so is a shape that does not fit, and
a zoo tensor left unfilled is an error unless the family declared it as something the
checkpoint does not carry (then it is named in a warning). The same table read backwards
(``invert``) writes a zoo model in the reference layout.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from mmzoo.convert.checkpoint import Checkpoint, ConversionError, listing

log = logging.getLogger(__name__)

# tensor rewrites a rule may apply on the way in, with their inverses for the way out
TRANSFORMS: dict[
    str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor] | None]
] = {
    # ``x @ P`` parameters (open_clip's projections, (in, out)) <-> ``nn.Linear`` weights (out, in)
    "T": (lambda t: t.t(), lambda t: t.t()),
    # a scalar, () or (1,) (open_clip's ``nonscalar_logit_scale``) <-> the zoo's (1,) (FSDP-shardable)
    "scalar": (lambda t: t.reshape(1), lambda t: t.reshape(())),
}


@dataclass(frozen=True)
class Rule:
    """Reference keys fully matching ``source`` fill ``targets`` (``re`` templates such as
    ``encoder.model.\\1``). No targets: a tensor the zoo rebuilds itself (an ``arange``
    buffer older checkpoints persisted). Several targets: the first is the one the zoo
    model computes with; the others are copies (e.g. a tower's own final norm that the
    zoo model applies as a separate module)."""

    source: str
    targets: tuple[str, ...]
    transform: str | None = None

    def match(self, key: str) -> re.Match[str] | None:
        return re.fullmatch(self.source, key)


@dataclass
class FillReport:
    """What ``fill`` did: tensors copied, and zoo keys it left as they were."""

    filled: list[str] = field(default_factory=list)
    unfilled: list[str] = field(default_factory=list)


def plan(keys: Iterable[str], rules: Sequence[Rule], what: str) -> dict[str, tuple[str, Rule]]:
    """``{zoo key: (reference key, rule)}``; unclaimed or doubly-mapped keys are errors."""
    out: dict[str, tuple[str, Rule]] = {}
    unmapped: list[str] = []
    for key in keys:
        for rule in rules:
            found = rule.match(key)
            if found:
                for target in rule.targets:
                    zoo_key = found.expand(target)
                    if zoo_key in out:
                        raise ConversionError(
                            f"{what}: {key!r} and {out[zoo_key][0]!r} both map to {zoo_key!r} "
                            "(a checkpoint mixing two layouts?)"
                        )
                    out[zoo_key] = (key, rule)
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise ConversionError(
            f"{what}: {len(unmapped)} checkpoint tensors have no place in the zoo model (nothing is dropped "
            f"silently; an unsupported variant of the architecture?):{listing(sorted(unmapped))}"
        )
    return out


def _converted_shape(
    weights: Checkpoint | Mapping[str, torch.Tensor], key: str, rule: Rule
) -> tuple[int, ...]:
    shape = weights.shape(key) if isinstance(weights, Checkpoint) else tuple(weights[key].shape)
    if rule.transform is None:
        return tuple(shape)
    return tuple(TRANSFORMS[rule.transform][0](torch.empty(shape, device="meta")).shape)


def _converted(weights: Mapping[str, torch.Tensor], key: str, rule: Rule) -> torch.Tensor:
    tensor = weights[key]
    return TRANSFORMS[rule.transform][0](tensor) if rule.transform else tensor


def fill(
    module: nn.Module,
    weights: Checkpoint | Mapping[str, torch.Tensor],
    rules: Sequence[Rule],
    what: str,
    allow_unfilled: Sequence[str] = (),
    extra: Mapping[str, torch.Tensor] | None = None,
) -> FillReport:
    """Copy ``weights`` into ``module`` by ``rules`` (then ``extra``, already zoo-named).

    Errors list every unclaimed reference key, every target the module lacks and every
    shape mismatch. Module tensors left unfilled are an error, except those matching an
    ``allow_unfilled`` pattern, which are named in a warning. Tied parameters count as
    filled when any of their names is.
    """
    mapping = plan(weights.keys(), rules, what)
    state = module.state_dict(keep_vars=True)
    extra = dict(extra or {})
    unknown = sorted(f"{key} -> {zoo_key}" for zoo_key, (key, _) in mapping.items() if zoo_key not in state)
    unknown += sorted(f"(extra) {k}" for k in extra if k not in state)
    if unknown:
        raise ConversionError(
            f"{what}: {len(unknown)} checkpoint tensors have no place in the zoo model (its parts, built "
            f"from the checkpoint's config, have no such tensor: an unsupported variant?):{listing(unknown)}"
        )
    mismatched = []
    for zoo_key, (key, rule) in mapping.items():
        shape = _converted_shape(weights, key, rule)
        if shape != tuple(state[zoo_key].shape):
            mismatched.append(f"{key} {list(shape)} -> {zoo_key} {list(state[zoo_key].shape)}")
    mismatched += [
        f"(extra) {k} {list(v.shape)} -> {list(state[k].shape)}"
        for k, v in extra.items()
        if v.shape != state[k].shape
    ]
    if mismatched:
        raise ConversionError(f"{what}: shapes do not match (checkpoint -> zoo):{listing(mismatched)}")

    by_tensor: dict[int, list[str]] = {}
    for name, tensor in state.items():
        by_tensor.setdefault(id(tensor), []).append(name)
    done: set[str] = set()
    with torch.no_grad():
        for zoo_key, (key, rule) in mapping.items():
            state[zoo_key].copy_(_converted(weights, key, rule))
            done.update(by_tensor[id(state[zoo_key])])
        for zoo_key, tensor in extra.items():
            state[zoo_key].copy_(tensor)
            done.update(by_tensor[id(state[zoo_key])])

    unfilled = sorted(k for k in state if k not in done)
    allowed = [k for k in unfilled if any(re.fullmatch(p, k) for p in allow_unfilled)]
    missing = [k for k in unfilled if k not in allowed]
    if missing:
        raise ConversionError(
            f"{what}: the checkpoint has no tensors for {len(missing)} zoo weights (a truncated "
            f"checkpoint, or a config that does not describe its weights?):{listing(missing)}"
        )
    if allowed:
        log.warning(
            "%s: %d zoo weights are not in the checkpoint and keep their initial values:%s",
            what,
            len(allowed),
            listing(allowed),
        )
    return FillReport(filled=sorted(done), unfilled=unfilled)


def map_tensors(
    weights: Mapping[str, torch.Tensor], rules: Sequence[Rule], what: str
) -> dict[str, torch.Tensor]:
    """``weights`` renamed (and transformed) into zoo keys, without a model."""
    return {
        zoo_key: _converted(weights, key, rule) for zoo_key, (key, rule) in plan(weights, rules, what).items()
    }


def invert(
    zoo_state: Mapping[str, torch.Tensor], reference_keys: Iterable[str], rules: Sequence[Rule], what: str
) -> dict[str, torch.Tensor]:
    """The reference state dict for ``reference_keys`` read from a zoo state dict: each key
    takes its rule's first target. Keys whose rule has no target are left out (the
    reference model rebuilds them)."""
    out: dict[str, torch.Tensor] = {}
    for key in reference_keys:
        rule = next((r for r in rules if r.match(key)), None)
        if rule is None:
            raise ConversionError(f"{what}: no rule for reference tensor {key!r}")
        if not rule.targets:
            continue
        tensor = zoo_state[rule.match(key).expand(rule.targets[0])]
        if rule.transform is not None:
            inverse = TRANSFORMS[rule.transform][1]
            if inverse is None:
                raise ConversionError(f"{what}: the {rule.transform!r} rewrite of {key!r} has no inverse")
            tensor = inverse(tensor)
        out[key] = tensor.detach().contiguous()
    return out
