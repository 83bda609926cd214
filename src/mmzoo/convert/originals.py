"""Projector-only releases, assembled with the parts they were trained with into a whole zoo model.

MiniGPT-4 released its stage-1/2 checkpoint as ``llama_proj`` alone (one Linear from BLIP-2's
Q-Former to the LLM); LLaVA released ``mm_projector.bin`` alone. The rest is public: for
MiniGPT-4, BLIP-2's vision tower and Q-Former (any ``Blip2ForConditionalGeneration``
checkpoint; its language projection and LLM are not MiniGPT-4's and are not read) and the
LLaMA/Vicuna it names; for LLaVA, a CLIP vision tower (``CLIPModel`` or ``CLIPVisionModel``,
read at its penultimate layer's patch tokens, as LLaVA v1 and v1.5 do) and its LLM. The
caller names those parts (``blip2=``/``vision=`` and ``llm=``; on the command line
``pretrained_with.<part>=``); the importer describes the zoo parts from their configs and
fills every tensor from the three sources, as one combined checkpoint (``blip2.*``,
``vision.*``, ``llm.*``, ``projector.*``) under one key table.

The zoo's LLM puts the visual tokens where its tokenizer's ``<image>`` is and adds that token
when the tokenizer lacks it (Vicuna does); the embedding tables then get one row more, the
mean of the others, as ``resize_token_embeddings`` does for ``llm.name_or_path`` (the row is
never read as input: image positions are overwritten by visual tokens).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer

from mmzoo.convert import blip2 as blip2_family
from mmzoo.convert.base import BRIDGE, ENCODER, LLM, Imported, architecture, tokenizer_node
from mmzoo.convert.checkpoint import Checkpoint, Combined, ConversionError, read_file, read_pretrained
from mmzoo.convert.mapping import Rule
from mmzoo.convert.projectors import LLAVA, detect_format, file_depth
from mmzoo.data.templates import IMAGE_PLACEHOLDER

log = logging.getLogger(__name__)

NEEDS = {
    "minigpt4": {
        "blip2": "a Blip2ForConditionalGeneration checkpoint (BLIP-2's vision tower and Q-Former)",
        "llm": "the LLaMA/Vicuna checkpoint MiniGPT-4 was trained with",
    },
    "llava": {
        "vision": "the CLIP checkpoint of its vision tower (CLIPModel or CLIPVisionModel)",
        "llm": "the LLaMA/Vicuna checkpoint LLaVA was trained with",
    },
}
LLM_RULE = Rule(r"llm\.(.+)", (r"llm.model.\1",))


def _prefixed(prefix: str, rules: tuple[Rule, ...], target_prefix: str = "") -> tuple[Rule, ...]:
    return tuple(
        Rule(rf"{prefix}\.{r.source}", tuple(target_prefix + t for t in r.targets), r.transform)
        for r in rules
    )


def _check_parts(path: str, form: str, given: dict[str, str | None]) -> None:
    missing = [f"  {name}=<{what}>" for name, what in NEEDS[form].items() if not given.get(name)]
    if missing:
        raise ConversionError(
            f"{path} is a {form} projector file: it holds the projector only, and the model needs the parts it "
            f"was trained with. Name them (python: load_pretrained(path, <part>=...); command line: "
            f"pretrained_with.<part>=...):\n" + "\n".join(missing)
        )


def _llm(llm: str, tokenizer: str | None, trust_remote_code: bool) -> tuple[dict[str, Any], Checkpoint, int]:
    """The causal LLM's node and weights (embedding tables grown by one row when ``<image>`` is new)."""
    config = AutoConfig.from_pretrained(llm, trust_remote_code=trust_remote_code)
    if config.is_encoder_decoder:
        raise ConversionError(f"{llm}: an encoder-decoder LLM; MiniGPT-4 and LLaVA read with a causal one")
    source = tokenizer or llm
    loaded = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    weights = read_pretrained(llm)
    rows = len(loaded) + (IMAGE_PLACEHOLDER not in loaded.get_vocab())  # what the zoo's LLM will hold
    tables = [k for k in weights if len(weights.shape(k)) == 2 and weights.shape(k)[0] == config.vocab_size]
    if rows > config.vocab_size:
        grown = {}
        for key in tables:
            table = weights[key]  # (V, D)
            extra = table.float().mean(dim=0, keepdim=True).to(table.dtype).expand(rows - table.shape[0], -1)
            grown[key] = torch.cat([table, extra])  # (rows, D)
        log.warning(
            "%s: %s grown to %d rows for %s (mean of the others)", llm, tables, rows, IMAGE_PLACEHOLDER
        )
        weights = weights.with_tensors(grown)
    node = {
        "_target_": LLM,
        "config": architecture(config),
        "tokenizer": tokenizer_node(source, trust_remote_code),
    }
    return node, weights, min(getattr(config, "max_position_embeddings", 2048), 2048)


def import_minigpt4(
    path: str,
    projector: Checkpoint,
    blip2: str | None = None,
    llm: str | None = None,
    tokenizer: str | None = None,
    trust_remote_code: bool = False,
) -> Imported:
    """MiniGPT-4's ``llama_proj`` file + BLIP-2's vision side and Q-Former + the LLM, as ``model=minigpt4``."""
    _check_parts(path, "minigpt4", {"blip2": blip2, "llm": llm})
    config = AutoConfig.from_pretrained(blip2)
    if config.model_type != "blip-2":
        raise ConversionError(f"blip2={blip2} is a {config.model_type!r} checkpoint, not BLIP-2's")
    problems = blip2_family.qformer_problems(config.qformer_config)
    if problems:
        raise ConversionError(
            f"blip2={blip2}: this Q-Former does not fit the zoo:\n  " + "\n  ".join(problems)
        )
    vision = read_pretrained(blip2)
    keep = [k for k in vision if k.startswith(("vision_model.", "qformer.")) or k == "query_tokens"]
    llm_node, llm_weights, context = _llm(llm, tokenizer, trust_remote_code)
    qformer = blip2_family.qformer_node(config.qformer_config, config.num_query_tokens)
    parts = {
        "encoder": blip2_family.vision_node(config.vision_config),
        "bridge": {
            "_target_": BRIDGE,
            "_partial_": True,
            "depth": 1,
            "bias": "llama_proj.bias" in projector,
            "qformer": qformer,
            "frozen": True,  # MiniGPT-4 trains the projection only
        },
        "llm": llm_node,
    }
    weights = Combined(
        path,
        {
            "blip2": (vision, keep),
            "llm": (llm_weights, list(llm_weights)),
            "projector": (projector, list(projector)),
        },
    )
    blip2_rules = [r for r in blip2_family.BLIP2_RULES if r.source.startswith(("vision", "query", "qformer"))]
    rules = (
        *_prefixed("blip2", tuple(blip2_rules)),
        LLM_RULE,
        Rule(r"projector\.llama_proj\.(weight|bias)", (r"bridge.projector.layers.0.\1",)),
    )
    return Imported("minigpt4", parts, weights, rules, path, model_args={"max_length": context})


def import_llava_projector(
    path: str,
    projector: Checkpoint,
    vision: str | None = None,
    llm: str | None = None,
    tokenizer: str | None = None,
    trust_remote_code: bool = False,
) -> Imported:
    """LLaVA's ``mm_projector.bin`` + a CLIP vision tower + the LLM, as ``model=llava``."""
    _check_parts(path, "llava", {"vision": vision, "llm": llm})
    config = AutoConfig.from_pretrained(vision)
    vision_config = getattr(config, "vision_config", config)
    if vision_config.model_type != "clip_vision_model":
        raise ConversionError(
            f"vision={vision} is a {config.model_type!r} checkpoint, not a CLIP vision tower"
        )
    tower = read_pretrained(vision)
    # CLIPModel (and older CLIPVisionModel) files prefix the tower with vision_model.; newer ones do not
    keep = [k for k in tower if k.startswith("vision_model.")] if hasattr(config, "vision_config") else list(tower)
    if not keep:
        raise ConversionError(f"vision={vision}: no vision_model.* tensors in it")
    llm_node, llm_weights, context = _llm(llm, tokenizer, trust_remote_code)
    parts = {
        "encoder": {
            "_target_": ENCODER,
            "config": architecture(vision_config),
            "layer": -2,
            "tokens": "patch",
        },
        "bridge": {
            "_target_": BRIDGE,
            "_partial_": True,
            "depth": file_depth(projector, "llava"),
            "act": "gelu",
            "bias": any(k.endswith(".bias") for k in projector),
            "qformer": None,
            "frozen": False,
        },
        "llm": llm_node,
    }
    weights = Combined(
        path,
        {
            "vision": (tower, keep),
            "llm": (llm_weights, list(llm_weights)),
            "projector": (projector, list(projector)),
        },
    )
    rules = (
        Rule(r"vision\.(?:vision_model\.)?embeddings\.position_ids", ()),
        Rule(r"vision\.(?:vision_model\.)?(.+)", (r"encoder.model.\1",)),
        LLM_RULE,
        *_prefixed("projector", LLAVA, "bridge.projector."),
    )
    return Imported("llava", parts, weights, rules, path, model_args={"max_length": context})


def import_projector_file(path: str | Path, trust_remote_code: bool = False, **parts: Any) -> Imported:
    """A MiniGPT-4 or LLaVA projector file (format from its keys) with the parts ``parts`` name."""
    path = str(path)
    projector = read_file(path)
    form = detect_format(projector)
    unknown = sorted(set(parts) - {*NEEDS[form], "tokenizer"})
    if unknown:
        raise ConversionError(
            f"{path} is a {form} projector file; {unknown} are not its parts (valid: {sorted(NEEDS[form])}, tokenizer)"
        )
    importer = import_minigpt4 if form == "minigpt4" else import_llava_projector
    return importer(path, projector, trust_remote_code=trust_remote_code, **parts)
