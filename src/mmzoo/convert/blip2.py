"""transformers ``Blip2ForConditionalGeneration`` / ``InstructBlipForConditionalGeneration`` <->
the zoo's BLIP-2 (stage 2) and InstructBLIP: import and export.

Both are the zoo's ``VisionLanguageModel`` with a Q-Former bridge:

- ``vision_model`` -> the encoder (a transformers BLIP-2 / InstructBLIP tower), read at its
  last layer through its ``post_layernorm`` (``norm=True``), as BLIP-2's ``ln_vision``;
- ``query_tokens`` + ``qformer`` -> ``bridge.qformer`` (``QFormerResampler``, whose
  transformer *is* transformers' ``Blip2QFormerModel``), ``language_projection`` -> the
  bridge's depth-1 projector;
- ``language_model`` (decoder-only, e.g. OPT, or encoder-decoder, e.g. Flan-T5) -> the
  ``LanguageModel``.

InstructBLIP's Q-Former reads the instruction: its ``embeddings`` (word + position tables
and the LayerNorm over ``[queries | instruction]``) become the zoo Q-Former's text side
(``embeddings.*``) and its own ``layernorm``, which applies the same norm to the same
concatenation. Its instruction tokenizer is the checkpoint's ``qformer_tokenizer/``.

The visual tokens go where the LLM tokenizer's ``<image>`` is (the zoo's collator expands
it to one position per query, as ``Blip2Processor`` does); the importer checks that this is
the config's ``image_token_index``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from torch import nn
from transformers import (
    AutoTokenizer,
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2QFormerConfig,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    PretrainedConfig,
)

from mmzoo.convert.base import BRIDGE, ENCODER, LLM, Imported, architecture, tokenizer_node
from mmzoo.convert.checkpoint import Checkpoint, ConversionError
from mmzoo.convert.mapping import Rule
from mmzoo.data.templates import IMAGE_PLACEHOLDER

QFORMER_TOKENIZER = "qformer_tokenizer"  # InstructBlipProcessor's subfolder for the instruction tokenizer
VISION_TYPES = ("blip_2_vision_model", "instructblip_vision_model")  # one architecture, two names
# Q-Former settings the zoo's QFormerResampler builds as transformers' defaults
FIXED_QFORMER = ("hidden_act", "layer_norm_eps")

VISION = Rule(r"vision_model\.(.+)", (r"encoder.model.\1",))
QUERIES = Rule(r"query_tokens", ("bridge.qformer.query_tokens",))
PROJECTION = Rule(r"language_projection\.(weight|bias)", (r"bridge.projector.layers.0.\1",))
LANGUAGE = Rule(r"language_model\.(.+)", (r"llm.model.\1",))
BLIP2_RULES = (VISION, QUERIES, Rule(r"qformer\.(.+)", (r"bridge.qformer.qformer.\1",)), PROJECTION, LANGUAGE)
INSTRUCTBLIP_RULES = (
    VISION,
    QUERIES,
    Rule(r"qformer\.embeddings\.position_ids", ()),  # an arange buffer older versions saved
    Rule(
        r"qformer\.embeddings\.(word_embeddings|position_embeddings)\.weight",
        (r"bridge.qformer.embeddings.\1.weight",),
    ),
    Rule(r"qformer\.embeddings\.layernorm\.(weight|bias)", (r"bridge.qformer.qformer.layernorm.\1",)),
    Rule(r"qformer\.encoder\.(.+)", (r"bridge.qformer.qformer.encoder.\1",)),
    PROJECTION,
    LANGUAGE,
)


def qformer_node(config: PretrainedConfig, num_queries: int) -> dict[str, Any]:
    """``QFormerResampler`` arguments for a transformers Q-Former config (``in_dim`` is injected)."""
    return {
        "num_queries": num_queries,
        "num_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "num_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "cross_attention_frequency": config.cross_attention_frequency,
        "max_text_length": config.max_position_embeddings,
        "dropout": config.hidden_dropout_prob,
    }


def qformer_problems(config: PretrainedConfig) -> list[str]:
    default = Blip2QFormerConfig()
    return [
        f"qformer_config.{name}={getattr(config, name)!r}; the zoo's Q-Former has {getattr(default, name)!r}"
        for name in FIXED_QFORMER
        if getattr(config, name) != getattr(default, name)
    ]


def vision_node(config: PretrainedConfig) -> dict[str, Any]:
    """BLIP-2's image tokens: every token of the last layer, through the tower's post_layernorm."""
    return {"_target_": ENCODER, "config": architecture(config), "layer": -1, "tokens": "all", "norm": True}


def llm_node(
    config: PretrainedConfig, tokenizer: Any, source: str, trust_remote_code: bool
) -> dict[str, Any]:
    """The ``LanguageModel`` node, after checking where the checkpoint wants the visual tokens."""
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
    known = IMAGE_PLACEHOLDER in tokenizer.get_vocab()
    if config.image_token_id is None:
        raise ConversionError(
            f"{source}: the config has no image_token_index (a checkpoint older than transformers' "
            f'{IMAGE_PLACEHOLDER} placeholders); add "image_token_index": <the tokenizer\'s id of '
            f"{IMAGE_PLACEHOLDER}> to its config.json"
        )
    if not known or image_id != config.image_token_id:
        raise ConversionError(
            f"{source}: the config's image_token_index is {config.image_token_id}, but the tokenizer maps "
            f"{IMAGE_PLACEHOLDER!r} to {image_id if known else 'nothing'}; the zoo puts the query outputs where "
            f"the tokenizer's {IMAGE_PLACEHOLDER!r} is"
        )
    text = config.text_config
    if text.is_encoder_decoder and text.decoder_start_token_id != tokenizer.pad_token_id:
        raise ConversionError(
            f"{source}: the encoder-decoder LLM starts decoding at id {text.decoder_start_token_id}, the zoo's "
            f"LanguageModel at the tokenizer's pad id {tokenizer.pad_token_id} (T5's convention)"
        )
    return {
        "_target_": LLM,
        "config": architecture(text),
        "tokenizer": tokenizer_node(source, trust_remote_code),
    }


def _model_args(config: PretrainedConfig) -> dict[str, Any]:
    return {"max_length": min(getattr(config.text_config, "max_position_embeddings", 2048), 2048)}


def _bridge(qformer: dict[str, Any], frozen: bool = False) -> dict[str, Any]:
    return {
        "_target_": BRIDGE,
        "_partial_": True,
        "depth": 1,
        "bias": True,
        "qformer": qformer,
        "frozen": frozen,
    }


def _check(name_or_path: str, config: PretrainedConfig, expected: str) -> None:
    problems = qformer_problems(config.qformer_config)
    architecture_name = (config.architectures or ["?"])[0]
    if architecture_name != expected:
        problems.insert(0, f"{architecture_name} has no zoo importer; {expected} has")
    if problems:
        raise ConversionError(
            f"{name_or_path}: this checkpoint does not fit the zoo:\n  " + "\n  ".join(problems)
        )


def import_blip2(
    name_or_path: str,
    config: Blip2Config,
    weights: Checkpoint,
    tokenizer: str | None = None,
    trust_remote_code: bool = False,
) -> Imported:
    """A transformers ``Blip2ForConditionalGeneration`` checkpoint as a zoo ``model=blip2``."""
    _check(name_or_path, config, "Blip2ForConditionalGeneration")
    if config.qformer_config.use_qformer_text_input:
        raise ConversionError(
            f"{name_or_path}: a BLIP-2 Q-Former with a text feed-forward (use_qformer_text_input)"
        )
    source = tokenizer or name_or_path
    loaded = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    parts = {
        "encoder": vision_node(config.vision_config),
        "bridge": _bridge(qformer_node(config.qformer_config, config.num_query_tokens)),
        "llm": llm_node(config, loaded, source, trust_remote_code),
    }
    return Imported("blip2", parts, weights, BLIP2_RULES, name_or_path, model_args=_model_args(config))


def _qformer_tokenizer(name_or_path: str, override: str | None, vocab_size: int) -> dict[str, Any]:
    node = (
        tokenizer_node(override)
        if override
        else {**tokenizer_node(name_or_path), "subfolder": QFORMER_TOKENIZER}
    )
    try:
        loaded = AutoTokenizer.from_pretrained(
            node["pretrained_model_name_or_path"], subfolder=node.get("subfolder", "")
        )
    except (OSError, ValueError) as err:
        raise ConversionError(
            f"{name_or_path}: InstructBLIP's Q-Former reads the instruction with its own tokenizer, found neither "
            f"in {QFORMER_TOKENIZER}/ nor given (qformer_tokenizer=<path>): {str(err).splitlines()[0]}"
        ) from None
    if len(loaded) != vocab_size:
        raise ConversionError(
            f"{name_or_path}: the Q-Former tokenizer has {len(loaded)} tokens, the Q-Former's word embeddings "
            f"{vocab_size} rows"
        )
    return node


def import_instructblip(
    name_or_path: str,
    config: InstructBlipConfig,
    weights: Checkpoint,
    tokenizer: str | None = None,
    qformer_tokenizer: str | None = None,
    trust_remote_code: bool = False,
) -> Imported:
    """A transformers ``InstructBlipForConditionalGeneration`` checkpoint as a zoo ``model=instructblip``."""
    _check(name_or_path, config, "InstructBlipForConditionalGeneration")
    source = tokenizer or name_or_path
    loaded = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    qformer = qformer_node(config.qformer_config, config.num_query_tokens)
    qformer["tokenizer"] = _qformer_tokenizer(
        name_or_path, qformer_tokenizer, config.qformer_config.vocab_size
    )
    parts = {
        "encoder": vision_node(config.vision_config),
        "bridge": _bridge(qformer),
        "llm": llm_node(config, loaded, source, trust_remote_code),
    }
    return Imported(
        "instructblip", parts, weights, INSTRUCTBLIP_RULES, name_or_path, model_args=_model_args(config)
    )


# ---- export ----------------------------------------------------------------------------
def _problems(model: nn.Module, instruction_aware: bool) -> list[str]:
    from mmzoo.components.encoders.transformers_encoder import TransformersVisionEncoder
    from mmzoo.models.vision_language import VisionLanguageModel

    if not isinstance(model, VisionLanguageModel):
        return [f"not a vision-language model ({type(model).__name__})"]
    problems = []
    enc, bridge, llm = model.encoder, model.bridge, model.llm
    if not (isinstance(enc, TransformersVisionEncoder) and enc.model.config.model_type in VISION_TYPES):
        problems.append(
            f"the encoder is not a transformers BLIP-2/InstructBLIP vision tower ({type(enc).__name__})"
        )
    elif enc.layer not in (-1, enc.model.config.num_hidden_layers) or enc.tokens != "all" or not enc.norm:
        problems.append(
            f"the encoder reads layer {enc.layer}, tokens {enc.tokens!r}, norm {enc.norm}; BLIP-2 reads all tokens "
            "of the last layer through the tower's post_layernorm (encoder.norm=true)"
        )
    qformer = getattr(bridge, "qformer", None)
    if qformer is None:
        problems.append("the bridge has no Q-Former")
    elif instruction_aware and not (model.instruction_aware and qformer.has_text):
        problems.append("the Q-Former does not read the instruction (InstructBLIP's does)")
    elif not instruction_aware and (model.instruction_aware or qformer.has_text):
        problems.append("the Q-Former has a text side (InstructBLIP's layout holds one, BLIP-2's does not)")
    if bridge.projector.depth != 1 or bridge.projector.layers[0].bias is None:
        problems.append("the projector is not one Linear with a bias (BLIP-2's language_projection)")
    if type(llm.model).__module__.startswith("peft"):
        problems.append("the LLM carries LoRA adapters (merge them first)")
    return problems


def _sub_config(config: PretrainedConfig) -> dict[str, Any]:
    data = config.to_dict()
    data.pop("model_type", None)  # the composite config names its own sub-config classes
    return data


def _reference(cls: type, config_cls: type) -> Any:
    def reference_for(model: nn.Module) -> tuple[nn.Module, Any]:
        """An empty ``cls`` shaped like the zoo ``model``, and the LLM tokenizer to save with it."""
        qformer, llm = model.bridge.qformer, model.llm
        config = config_cls(
            vision_config=_sub_config(model.encoder.model.config),
            qformer_config=_sub_config(qformer.config),
            text_config=llm.model.config.to_dict(),
            num_query_tokens=qformer.num_queries,
            image_token_index=model.image_token_id,
        )
        return cls(config), llm.tokenizer

    return reference_for


def save_qformer_tokenizer(model: nn.Module, out: Path) -> None:
    """The instruction tokenizer where ``InstructBlipProcessor`` keeps it."""
    model.bridge.qformer.tokenizer.save_pretrained(out / QFORMER_TOKENIZER)


BLIP2 = SimpleNamespace(
    export_problems=lambda model: _problems(model, instruction_aware=False),
    reference_for=_reference(Blip2ForConditionalGeneration, Blip2Config),
    RULES=BLIP2_RULES,
)
INSTRUCTBLIP = SimpleNamespace(
    export_problems=lambda model: _problems(model, instruction_aware=True),
    reference_for=_reference(InstructBlipForConditionalGeneration, InstructBlipConfig),
    RULES=INSTRUCTBLIP_RULES,
    save_processor=save_qformer_tokenizer,
)
