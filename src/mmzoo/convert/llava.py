"""transformers ``LlavaForConditionalGeneration`` <-> the zoo's LLaVA: import and export.

LLaVA is the zoo's ``VisionLanguageModel``: the vision tower's ``vision_feature_layer``
(-2) with CLS dropped (``vision_feature_select_strategy='default'`` = ``tokens='patch'``)
or kept (``'full'`` = ``'all'``), ``multi_modal_projector`` (Linear-act-Linear) as a
depth-2 ``Bridge``, the text model + ``lm_head`` as the ``LanguageModel``. The image token
is the tokenizer's ``<image>``, which the zoo's collator expands to one position per
visual token, as ``LlavaProcessor`` does; the importer checks it is the config's
``image_token_id``. Keys are matched in both the transformers 5 layout
(``model.language_model.*``, ``lm_head``) and the older one (``language_model.model.*``,
``vision_tower.vision_model.*``) that hub checkpoints still use.

A depth-1 bridge (LLaVA v1's linear projector) is written as ``projector_hidden_act=
'linear'`` with an identity ``linear_2``: the same numbers, and re-import recognises it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration

from mmzoo.convert.base import BRIDGE, ENCODER, LLM, Imported, architecture, tokenizer_node
from mmzoo.convert.checkpoint import Checkpoint, ConversionError
from mmzoo.convert.mapping import Rule
from mmzoo.data.templates import IMAGE_PLACEHOLDER

VISION_TYPES = ("clip_vision_model", "siglip_vision_model")
STRATEGY_TO_TOKENS = {"default": "patch", "full": "all"}
# transformers' activation names -> the zoo's (``quick_gelu`` in the zoo is GELU's tanh form)
ACTIVATIONS = {
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "tanh": "tanh",
    "gelu_pytorch_tanh": "quick_gelu",
}
PROJECTOR = r"(?:model\.)?multi_modal_projector"


def rules(linear_projector: bool = False) -> tuple[Rule, ...]:
    """The key table; ``linear_projector``: ``linear_2`` is the identity a depth-1 bridge exports."""
    second = () if linear_projector else (r"bridge.projector.layers.2.\1",)
    return (
        Rule(r"(?:model\.)?vision_tower\.(?:vision_model\.)?embeddings\.position_ids", ()),
        Rule(r"(?:model\.)?vision_tower\.(?:vision_model\.)?(.+)", (r"encoder.model.\1",)),
        Rule(PROJECTOR + r"\.linear_1\.(weight|bias)", (r"bridge.projector.layers.0.\1",)),
        Rule(PROJECTOR + r"\.linear_2\.(weight|bias)", second),
        Rule(r"model\.language_model\.(.+)", (r"llm.model.model.\1",)),
        Rule(r"language_model\.model\.(.+)", (r"llm.model.model.\1",)),
        Rule(r"(?:language_model\.)?lm_head\.weight", ("llm.model.lm_head.weight",)),
    )


def _is_identity_projection(weights: Checkpoint, dim: int) -> bool:
    keys = {
        m.group(1): k for k in weights if (m := re.fullmatch(PROJECTOR + r"\.linear_2\.(weight|bias)", k))
    }
    if "weight" not in keys:
        return False
    eye = torch.equal(weights[keys["weight"]], torch.eye(dim, dtype=weights[keys["weight"]].dtype))
    return eye and ("bias" not in keys or not weights[keys["bias"]].any())


def import_llava(
    name_or_path: str,
    config: LlavaConfig,
    weights: Checkpoint,
    tokenizer: str | None = None,
    trust_remote_code: bool = False,
) -> Imported:
    """A transformers ``LlavaForConditionalGeneration`` checkpoint as a zoo ``model=llava``."""
    layer, strategy = config.vision_feature_layer, config.vision_feature_select_strategy
    problems = []
    if not isinstance(layer, int):
        problems.append(f"vision_feature_layer={layer}: the zoo encoder reads one layer, not a concatenation")
    if strategy not in STRATEGY_TO_TOKENS:
        problems.append(
            f"vision_feature_select_strategy={strategy!r}; supported: {sorted(STRATEGY_TO_TOKENS)}"
        )
    if config.vision_config.model_type not in VISION_TYPES:
        problems.append(f"vision tower {config.vision_config.model_type!r}; supported: {list(VISION_TYPES)}")
    if config.text_config.is_encoder_decoder:
        problems.append("an encoder-decoder text model")
    act = config.projector_hidden_act
    linear = act == "linear" and _is_identity_projection(weights, config.text_config.hidden_size)
    if act not in ACTIVATIONS and not linear:
        problems.append(
            f"projector_hidden_act={act!r}; supported: {sorted(ACTIVATIONS)} (or an exported linear one)"
        )
    if problems:
        raise ConversionError(
            f"{name_or_path}: this LLaVA checkpoint does not fit the zoo:\n  " + "\n  ".join(problems)
        )

    tokenizer_source = tokenizer or name_or_path
    loaded = AutoTokenizer.from_pretrained(tokenizer_source, trust_remote_code=trust_remote_code)
    image_id = loaded.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
    if IMAGE_PLACEHOLDER not in loaded.get_vocab() or image_id != config.image_token_id:
        raise ConversionError(
            f"{name_or_path}: the config's image_token_id is {config.image_token_id}, but the tokenizer maps "
            f"{IMAGE_PLACEHOLDER!r} to {image_id if IMAGE_PLACEHOLDER in loaded.get_vocab() else 'nothing'}; "
            f"the zoo puts visual tokens where the tokenizer's {IMAGE_PLACEHOLDER!r} is"
        )
    llm: dict[str, Any] = {
        "_target_": LLM,
        "config": architecture(config.text_config),
        "tokenizer": tokenizer_node(tokenizer_source, trust_remote_code),
    }
    parts = {
        "encoder": {
            "_target_": ENCODER,
            "config": architecture(config.vision_config),
            "layer": layer,
            "tokens": STRATEGY_TO_TOKENS[strategy],
        },
        "bridge": {
            "_target_": BRIDGE,
            "_partial_": True,
            "depth": 1 if linear else 2,
            "act": "gelu" if linear else ACTIVATIONS[act],
            "bias": config.multimodal_projector_bias,
            "qformer": None,
            "frozen": False,
        },
        "llm": llm,
    }
    context = getattr(config.text_config, "max_position_embeddings", 2048)
    return Imported(
        "llava", parts, weights, rules(linear), name_or_path, model_args={"max_length": min(context, 2048)}
    )


def _zoo_activation(module: nn.Module) -> str | None:
    """The transformers name of a zoo activation module (None: not expressible)."""
    if isinstance(module, nn.GELU):
        return "gelu" if module.approximate == "none" else "gelu_pytorch_tanh"
    return {nn.ReLU: "relu", nn.SiLU: "silu", nn.Tanh: "tanh"}.get(type(module))


def export_problems(model: nn.Module) -> list[str]:
    """Why ``model`` cannot be written as a ``LlavaForConditionalGeneration`` (empty when it can)."""
    from mmzoo.components.encoders.transformers_encoder import TransformersVisionEncoder
    from mmzoo.models.vision_language import VisionLanguageModel

    if not isinstance(model, VisionLanguageModel):
        return [f"not a vision-language model ({type(model).__name__})"]
    problems = []
    enc, bridge, llm = model.encoder, model.bridge, model.llm
    if not (isinstance(enc, TransformersVisionEncoder) and enc.model.config.model_type in VISION_TYPES):
        problems.append(f"the encoder is not a transformers CLIP/SigLIP tower ({type(enc).__name__})")
    elif enc.norm or enc.tokens == "cls":
        problems.append(
            f"the encoder applies its final norm or keeps CLS only (norm={enc.norm}, tokens={enc.tokens!r})"
        )
    if getattr(bridge, "qformer", None) is not None:
        problems.append("the bridge has a Q-Former (LLaVA's projector is an MLP)")
    else:
        projector = bridge.projector
        linears = [m for m in projector.layers if isinstance(m, nn.Linear)]
        if projector.depth not in (1, 2):
            problems.append(f"the bridge MLP has depth {projector.depth} (LLaVA's has 1 or 2)")
        elif projector.depth == 2 and _zoo_activation(projector.layers[1]) is None:
            problems.append(f"activation {type(projector.layers[1]).__name__} has no transformers name")
        elif linears[0].out_features != llm.dim:
            problems.append("the bridge's hidden width differs from the LLM's (LLaVA's projector keeps it)")
    if getattr(llm, "is_encoder_decoder", False):
        problems.append("the LLM is an encoder-decoder (LLaVA's is causal)")
    if type(llm.model).__module__.startswith("peft"):
        problems.append("the LLM carries LoRA adapters (merge them first)")
    return problems


def reference_for(model: nn.Module) -> tuple[LlavaForConditionalGeneration, Any]:
    """An empty ``LlavaForConditionalGeneration`` shaped like the zoo ``model`` (a depth-1
    bridge's identity ``linear_2`` already set), and the tokenizer to save with it."""
    enc, projector, llm = model.encoder, model.bridge.projector, model.llm
    text_config = llm.model.config
    config = LlavaConfig(
        vision_config=enc.model.config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_id=model.image_token_id,
        image_seq_length=model.num_image_tokens,
        vision_feature_layer=enc.layer,
        vision_feature_select_strategy="default" if enc.tokens == "patch" else "full",
        projector_hidden_act=_zoo_activation(projector.layers[1]) if projector.depth == 2 else "linear",
        multimodal_projector_bias=projector.layers[0].bias is not None,
        tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
    )
    reference = LlavaForConditionalGeneration(config)
    if projector.depth == 1:
        second = reference.model.multi_modal_projector.linear_2
        with torch.no_grad():
            second.weight.copy_(torch.eye(second.weight.shape[0]))
            if second.bias is not None:
                second.bias.zero_()
    return reference, llm.tokenizer


def save_processor(model: nn.Module, out: Path) -> None:
    """A ``LlavaProcessor``: it expands one ``<image>`` into as many tokens as the zoo's collator does."""
    from transformers import LlavaProcessor

    from mmzoo.convert.clip import image_processor

    enc = model.encoder
    LlavaProcessor(
        image_processor=image_processor(enc),
        tokenizer=model.llm.tokenizer,
        patch_size=enc.model.config.patch_size,
        vision_feature_select_strategy="default" if enc.tokens == "patch" else "full",
        num_additional_image_tokens=enc.num_prefix_tokens,
        image_token=IMAGE_PLACEHOLDER,
    ).save_pretrained(out)


def export_rules(model: nn.Module) -> tuple[Rule, ...]:
    return rules(linear_projector=model.bridge.projector.depth == 1)
