"""open_clip CLIP models -> the zoo's CLIP, with their projection heads and logit scale.

Written ``open_clip:<model name>`` with ``pretrained=<tag or local file>``: the model
name is looked up in open_clip's registry (its ``model_configs/*.json``, anything added
with ``open_clip.add_model_config``, or ``hf-hub:``/``local-dir:`` names), a tag is
downloaded by open_clip (network), a file is read here (safetensors, or a tensors-only
pickle). The towers become the zoo's ``OpenClipVisionEncoder``/``OpenClipTextEncoder``
built from the same config; ``visual.proj`` (``x @ P``) becomes a bias-free ``Bridge``
Linear, ``text_projection`` the model's, ``visual.ln_post`` its ``image_norm``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import open_clip
from transformers import AutoTokenizer

from mmzoo.components.text.open_clip_text import OPENAI_BPE_TOKENIZER
from mmzoo.convert.base import BRIDGE, OPEN_CLIP_ENCODER, OPEN_CLIP_TEXT, Imported, tokenizer_node
from mmzoo.convert.checkpoint import ConversionError, read_file
from mmzoo.convert.mapping import Rule

PREFIX = "open_clip:"
_TEXT_KEYS = r"(token_embedding\.weight|positional_embedding|transformer\..+|ln_final\..+)"
RULES = (
    Rule(r"visual\.proj", ("bridge.projector.layers.0.weight",), "T"),
    Rule(r"visual\.ln_post\.(weight|bias)", (r"image_norm.\1", r"encoder.visual.ln_post.\1")),
    Rule(r"visual\.(.+)", (r"encoder.visual.\1",)),
    Rule(r"(?:text\.)?text_projection", ("text_projection.weight",), "T"),
    Rule(r"(?:text\.)?" + _TEXT_KEYS, (r"text.\1",)),
    Rule(r"logit_scale", ("logit_scale",), "scalar"),
)


def _unsupported(model_cfg: dict[str, Any]) -> list[str]:
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    checks = {
        "a timm vision tower": bool(vision.get("timm_model_name")),
        "a ResNet vision tower": isinstance(vision.get("layers"), (list, tuple)),
        "attentional pooling (CoCa)": bool(vision.get("attentional_pool")) or "multimodal_cfg" in model_cfg,
        f"vision pool_type {vision.get('pool_type')!r} (the zoo pools CLS)": vision.get("pool_type", "tok")
        != "tok",
        "final_ln_after_pool": bool(vision.get("final_ln_after_pool") or text.get("final_ln_after_pool")),
        "a Hugging Face text tower": bool(text.get("hf_model_name")),
        "a text CLS embedding": bool(text.get("embed_cls")),
        f"text pool_type {text.get('pool_type')!r}": text.get("pool_type", "argmax") not in ("argmax", "eos"),
        "a biased or non-linear text projection": bool(text.get("proj_bias"))
        or text.get("proj_type", "linear") != "linear",
        "a logit bias (SigLIP)": "init_logit_bias" in model_cfg,
    }
    return [name for name, bad in checks.items() if bad]


def _checkpoint_file(model_name: str, pretrained: str | None) -> tuple[Path, dict[str, Any]]:
    """The weights file for ``pretrained`` (a file, a tag, or the hub repo of an ``hf-hub:`` name)."""
    if pretrained is not None and Path(pretrained).is_file():
        return Path(pretrained), {}
    schema, identifier = open_clip.factory.parse_model_name(model_name)
    if schema == "hf-hub" and pretrained is None:
        return Path(open_clip.pretrained.download_pretrained_from_hf(identifier)), {}
    if pretrained is None:
        raise ConversionError(
            f"{PREFIX}{model_name}: say which weights with pretrained=<tag or file>; tags: "
            f"{open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        raise ConversionError(
            f"{PREFIX}{model_name}: pretrained={pretrained!r} is neither a file nor a known tag; tags: "
            f"{open_clip.list_pretrained_tags_by_model(model_name)}"
        )
    return Path(open_clip.pretrained.download_pretrained(tag_cfg)), tag_cfg


def import_open_clip(
    model_name: str, pretrained: str | None = None, tokenizer: str | None = None
) -> Imported:
    """``open_clip:<model_name>`` with ``pretrained`` weights as a zoo ``model=clip``.

    ``tokenizer`` (hub id or directory) defaults to the config's ``hf_tokenizer_name``,
    else OpenAI's BPE as a transformers tokenizer (the same vocabulary as open_clip's).
    """
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise ConversionError(
            f"{PREFIX}{model_name}: unknown open_clip model (register a config with "
            f"open_clip.add_model_config); it knows {len(open_clip.list_models())} models, such as "
            f"{open_clip.list_models()[:5]}"
        )
    problems = _unsupported(model_cfg)
    if problems:
        raise ConversionError(f"{PREFIX}{model_name}: the zoo's CLIP cannot hold " + ", ".join(problems))
    path, tag_cfg = _checkpoint_file(model_name, pretrained)
    # the activation the weights were trained with (a tag knows it even when the config name does not say)
    quick_gelu = bool(model_cfg.get("quick_gelu", False) or tag_cfg.get("quick_gelu", False))
    vision_cfg, text_cfg = dict(model_cfg["vision_cfg"]), dict(model_cfg["text_cfg"])
    embed_dim = int(model_cfg["embed_dim"])

    tokenizer_source = tokenizer or text_cfg.get("hf_tokenizer_name") or OPENAI_BPE_TOKENIZER
    loaded = AutoTokenizer.from_pretrained(tokenizer_source)
    eos = loaded.eos_token_id
    if text_cfg.get("pool_type", "argmax") == "argmax" and eos != max(loaded.get_vocab().values()):
        raise ConversionError(
            f"{PREFIX}{model_name}: the model pools text at argmax(ids), the EOS position only when EOS "
            f"has the largest id; the tokenizer's EOS id {eos} is not its largest"
        )
    if text_cfg.get("pool_type") == "eos" and text_cfg.get("eos_id", 2) != eos:
        raise ConversionError(
            f"{PREFIX}{model_name}: the model pools at eos_id={text_cfg.get('eos_id', 2)}, the "
            f"tokenizer's EOS id is {eos}"
        )
    parts = {
        "encoder": {
            "_target_": OPEN_CLIP_ENCODER,
            "vision_cfg": vision_cfg,
            "embed_dim": embed_dim,
            "quick_gelu": quick_gelu,
            "layer": -1,
            "tokens": "all",
        },
        "text": {
            "_target_": OPEN_CLIP_TEXT,
            "text_cfg": text_cfg,
            "tokenizer": tokenizer_node(tokenizer_source),
            "embed_dim": embed_dim,
            "quick_gelu": quick_gelu,
            "max_length": text_cfg.get("context_length", 77),
        },
        "bridge": {
            "_target_": BRIDGE,
            "_partial_": True,
            "depth": 1,
            "bias": False,
            "qformer": None,
            "frozen": False,
        },
    }
    return Imported(
        "clip", parts, read_file(path), RULES, f"{PREFIX}{model_name}", model_args={"embed_dim": embed_dim}
    )
