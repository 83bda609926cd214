"""transformers ``CLIPModel`` <-> the zoo's CLIP (``DualEncoder``): import and export.

The zoo's CLIP is the same computation in other boxes: the vision tower's final norm is
the model's ``image_norm`` (applied to every token, then CLS is pooled: the same numbers
as norming the CLS token alone), ``visual_projection`` is a bias-free depth-1 ``Bridge``,
the text tower pools at the tokenizer's EOS id, ``text_projection`` and ``logit_scale``
are the model's own. The tower keeps a copy of its final norm (the zoo encoder may apply
it itself with ``norm=True``), so ``post_layernorm`` fills both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, PretrainedConfig

from mmzoo.convert.base import BRIDGE, ENCODER, TEXT, Imported, architecture, tokenizer_node
from mmzoo.convert.checkpoint import Checkpoint, ConversionError
from mmzoo.convert.mapping import Rule

RULES = (
    Rule(r"(vision|text)_model\.embeddings\.position_ids", ()),  # an arange buffer older versions saved
    Rule(
        r"vision_model\.post_layernorm\.(weight|bias)", (r"image_norm.\1", r"encoder.model.post_layernorm.\1")
    ),
    Rule(r"vision_model\.(.+)", (r"encoder.model.\1",)),
    Rule(r"text_model\.(.+)", (r"text.model.\1",)),
    Rule(r"visual_projection\.weight", ("bridge.projector.layers.0.weight",)),
    Rule(r"text_projection\.weight", ("text_projection.weight",)),
    Rule(r"logit_scale", ("logit_scale",), "scalar"),
)


def check_eos_pooling(text_config: PretrainedConfig, tokenizer: Any, what: str) -> None:
    """The zoo pools text at the tokenizer's EOS id; transformers at ``argmax(ids)`` when the
    config says ``eos_token_id == 2`` (checkpoints older than transformers PR #24773). The
    two agree only when EOS is the tokenizer's largest id, as in OpenAI's BPE."""
    if text_config.eos_token_id == 2 and tokenizer.eos_token_id != max(tokenizer.get_vocab().values()):
        raise ConversionError(
            f"{what}: the checkpoint pools text at argmax(input_ids) (legacy eos_token_id=2), which is "
            "the EOS position only when EOS has the largest id; this tokenizer's EOS id is "
            f"{tokenizer.eos_token_id}. Set "
            "text_config.eos_token_id to the tokenizer's EOS id in config.json if that is where it pools."
        )


def import_clip(
    name_or_path: str,
    config: CLIPConfig,
    weights: Checkpoint,
    tokenizer: str | None = None,
    trust_remote_code: bool = False,
) -> Imported:
    """A transformers ``CLIPModel`` checkpoint as a zoo ``model=clip``."""
    tokenizer_source = tokenizer or name_or_path
    loaded = AutoTokenizer.from_pretrained(tokenizer_source, trust_remote_code=trust_remote_code)
    check_eos_pooling(config.text_config, loaded, name_or_path)
    text = architecture(config.text_config)
    parts = {
        "encoder": {
            "_target_": ENCODER,
            "config": architecture(config.vision_config),
            "layer": -1,
            "tokens": "all",
        },
        "text": {
            "_target_": TEXT,
            "config": text,
            "tokenizer": tokenizer_node(tokenizer_source, trust_remote_code),
            "max_length": text["max_position_embeddings"],
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
        "clip", parts, weights, RULES, name_or_path, model_args={"embed_dim": config.projection_dim}
    )


def export_problems(model: torch.nn.Module) -> list[str]:
    """Why ``model`` cannot be written as a ``CLIPModel`` (empty when it can)."""
    from mmzoo.components.encoders.transformers_encoder import TransformersVisionEncoder
    from mmzoo.components.text.transformers_text import TransformersTextEncoder
    from mmzoo.models.dual_encoder import DualEncoder

    if not isinstance(model, DualEncoder):
        return [f"not a dual encoder ({type(model).__name__})"]
    problems = []
    enc, text, bridge = model.encoder, model.text, model.bridge
    if not (
        isinstance(enc, TransformersVisionEncoder) and enc.model.config.model_type == "clip_vision_model"
    ):
        problems.append(f"the encoder is not a transformers CLIP tower ({type(enc).__name__})")
    elif enc.layer not in (-1, enc.model.config.num_hidden_layers) or enc.tokens == "patch" or enc.norm:
        problems.append(
            f"the encoder reads layer {enc.layer}, tokens {enc.tokens!r}, norm {enc.norm}; CLIP pools the "
            "last layer's CLS token through the model's own norm"
        )
    if not (isinstance(text, TransformersTextEncoder) and text.model.config.model_type == "clip_text_model"):
        problems.append(f"the text tower is not a transformers CLIP text tower ({type(text).__name__})")
    if getattr(bridge, "qformer", None) is not None or getattr(bridge.projector, "depth", None) != 1:
        problems.append("the bridge is not a single Linear (CLIP's visual_projection)")
    elif bridge.projector.layers[0].bias is not None:
        problems.append(
            "the bridge's Linear has a bias, CLIP's visual_projection has none (train with bridge.bias=false)"
        )
    if not isinstance(model.image_norm, torch.nn.LayerNorm):
        problems.append("the model has no image norm (CLIP's post_layernorm)")
    return problems


def reference_for(model: torch.nn.Module) -> tuple[CLIPModel, Any]:
    """An empty ``CLIPModel`` shaped like the zoo ``model``, and the tokenizer to save with it."""
    text_config = model.text.model.config.to_dict()
    text_config["eos_token_id"] = model.text.tokenizer.eos_token_id  # where the zoo pools (not argmax)
    config = CLIPConfig(
        text_config=text_config,
        vision_config=model.encoder.model.config.to_dict(),
        projection_dim=model.embed_dim,
        logit_scale_init_value=float(model.logit_scale.detach()),
    )
    return CLIPModel(config), model.text.tokenizer


def image_processor(encoder: torch.nn.Module) -> Any:
    """The zoo's image transform (bicubic resize, centre crop, normalise) as a ``CLIPImageProcessor``."""
    from transformers import CLIPImageProcessor

    size = encoder.image_size
    return CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(encoder.mean),
        image_std=list(encoder.std),
    )


def save_processor(model: torch.nn.Module, out: Path) -> None:
    """Tokenizer and image preprocessing together, so ``AutoProcessor.from_pretrained(out)`` works."""
    from transformers import CLIPProcessor

    CLIPProcessor(
        image_processor=image_processor(model.encoder), tokenizer=model.text.tokenizer
    ).save_pretrained(out)
