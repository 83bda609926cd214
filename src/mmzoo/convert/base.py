"""What a family importer hands to the loader: how to build the zoo model, and its weights.

An importer never builds a model itself. It describes the parts as the same config nodes
a YAML file in the config tree would hold (``_target_`` + sizes read from the checkpoint),
so the model is built by the zoo's own classes, a run directory records it like any
other run, and ``python -m mmzoo.run pretrained=...`` can apply the model's recipe to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PretrainedConfig

from mmzoo.convert.checkpoint import Checkpoint
from mmzoo.convert.mapping import Rule

ENCODER = "mmzoo.components.encoders.TransformersVisionEncoder"
OPEN_CLIP_ENCODER = "mmzoo.components.encoders.OpenClipVisionEncoder"
TEXT = "mmzoo.components.text.TransformersTextEncoder"
OPEN_CLIP_TEXT = "mmzoo.components.text.OpenClipTextEncoder"
BRIDGE = "mmzoo.components.bridges.Bridge"
LLM = "mmzoo.components.llm.LanguageModel"

# config entries that describe a file, not an architecture
_NOT_ARCHITECTURE = (
    "architectures",
    "transformers_version",
    "_name_or_path",
    "dtype",
    "torch_dtype",
    "id2label",
    "label2id",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "use_cache",
    "chunk_size_feed_forward",
    "problem_type",
)


@dataclass
class Imported:
    """A checkpoint read for the zoo.

    ``model`` names the zoo model (``conf/model/<model>.yaml``) whose recipe fits the
    checkpoint; ``parts`` holds the config nodes of the part groups (``encoder``,
    ``text``, ``bridge``, ``llm``); ``model_args`` the model keys the checkpoint fixes
    (``embed_dim``...). ``weights`` under reference names fill the model by ``rules``;
    ``extra`` (zoo names) is applied after them; zoo keys matching ``allow_unfilled`` may
    stay as built (a warning names them).
    """

    model: str
    parts: dict[str, dict[str, Any]]
    weights: Checkpoint | Mapping[str, torch.Tensor]
    rules: Sequence[Rule]
    source: str
    model_args: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    allow_unfilled: Sequence[str] = ()


def architecture(config: PretrainedConfig) -> dict[str, Any]:
    """A transformers config as a plain dict for a part node (``model_type`` kept)."""
    if getattr(config, "quantization_config", None) is not None:
        raise ValueError(f"quantized checkpoints are not supported ({config.model_type})")
    data = config.to_dict()
    out = {k: v for k, v in data.items() if k not in _NOT_ARCHITECTURE and not k.startswith("_")}
    out["model_type"] = config.model_type
    return out


def tokenizer_node(name_or_path: str, trust_remote_code: bool = False) -> dict[str, Any]:
    """A config node that loads the tokenizer saved with a checkpoint."""
    node: dict[str, Any] = {
        "_target_": "transformers.AutoTokenizer.from_pretrained",
        "pretrained_model_name_or_path": name_or_path,
    }
    if trust_remote_code:
        node["trust_remote_code"] = True
    return node
