"""transformers ``BlipForConditionalGeneration`` / ``BlipForImageTextRetrieval`` <-> the zoo's BLIP.

The zoo's BLIP (``BlipModel``) holds both halves of the paper's model: the text side's
encoder (ITC, ITM) and decoder (captioning) share all but their self-attention, as BLIP
trains them. transformers splits them into two classes, each holding one half:

- the retrieval model fills the vision tower, the text *encoder* (``text.encoder``), and
  the heads ``vision_proj``, ``text_proj``, ``itm_head``; the decoder's own self-attention
  and LM head, and the logit scale, stay as built (named in a warning);
- the captioning model fills the vision tower and the text *decoder* (``text.decoder``,
  whose embeddings, cross-attention and feed-forward are the encoder's too); the encoder's
  own self-attention and the three heads stay as built.

The vision tower is read at its last layer through its ``post_layernorm`` (``norm=True``):
transformers' ``last_hidden_state``. One difference in use, not in weights: the zoo (like
BLIP's own code) puts the tokenizer's [ENC] / [DEC] at position 0 itself for the grounded
encoder / decoder; transformers' classes take the ids as given (its captioning ``generate``
puts BOS = [DEC] first; its ITM keeps [CLS], huggingface/transformers#25629).

Export writes either class (``CAPTIONING`` or ``RETRIEVAL``); the half it has no place for
goes to ``mmzoo_extra.safetensors``, so re-import is the identity.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from torch import nn
from transformers import (
    AutoTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
)

from mmzoo.convert.base import ENCODER, Imported, architecture, tokenizer_node
from mmzoo.convert.checkpoint import Checkpoint, ConversionError
from mmzoo.convert.mapping import Rule

BLIP_TEXT = "mmzoo.components.text.BlipText"
CAPTION_LENGTH = 35  # BLIP's caption length (its ``max_length``), capped by the text side's positions

VISION = Rule(r"vision_model\.(.+)", (r"encoder.model.\1",))
CAPTIONING_RULES = (VISION, Rule(r"text_decoder\.(.+)", (r"text.decoder.\1",)))
RETRIEVAL_RULES = (
    VISION,
    Rule(r"text_encoder\.(.+)", (r"text.encoder.\1",)),
    Rule(r"(vision_proj|text_proj|itm_head)\.(weight|bias)", (r"\1.\2",)),
)
# what each class does not hold, zoo names (the other half of the text side, heads)
SELF_ATTENTION = r"text\.{}\.encoder\.layer\.\d+\.attention\..+"
CAPTIONING_LACKS = (
    SELF_ATTENTION.format("encoder"),
    r"(vision_proj|text_proj|itm_head)\..+",
    r"logit_scale",
)
RETRIEVAL_LACKS = (
    SELF_ATTENTION.format(r"decoder\.bert"),
    r"text\.decoder\.cls\.predictions\.(transform\..+|bias|decoder\.bias)",
    r"logit_scale",
)
ARCHITECTURES = {
    "BlipForConditionalGeneration": (CAPTIONING_RULES, CAPTIONING_LACKS),
    "BlipForImageTextRetrieval": (RETRIEVAL_RULES, RETRIEVAL_LACKS),
}


def _check_special_tokens(config: BlipConfig, tokenizer: Any, what: str) -> None:
    """The zoo decodes from [DEC] (else BOS) and stops at [SEP] (else EOS); the checkpoint's
    config says which ids it decodes from and stops at: they must be the same tokens."""
    vocab = tokenizer.get_vocab()
    dec = vocab.get("[DEC]", tokenizer.bos_token_id)
    stop = tokenizer.sep_token_id or tokenizer.eos_token_id
    text = config.text_config
    problems = []
    if dec != text.bos_token_id:
        problems.append(
            f"the checkpoint decodes from id {text.bos_token_id} (text_config.bos_token_id), the tokenizer's "
            f"[DEC]/BOS is {dec}"
        )
    if stop != text.sep_token_id:
        problems.append(
            f"the checkpoint ends captions at id {text.sep_token_id} (text_config.sep_token_id), the tokenizer's "
            f"[SEP]/EOS is {stop}"
        )
    if problems:
        raise ConversionError(
            f"{what}: the tokenizer does not match the checkpoint (pass tokenizer=<the checkpoint's own>):\n  "
            + "\n  ".join(problems)
        )


def import_blip(
    name_or_path: str,
    config: BlipConfig,
    weights: Checkpoint,
    tokenizer: str | None = None,
    trust_remote_code: bool = False,
) -> Imported:
    """A transformers BLIP checkpoint (captioning or retrieval) as a zoo ``model=blip``."""
    architecture_name = (config.architectures or ["?"])[0]
    if architecture_name not in ARCHITECTURES:
        raise ConversionError(
            f"{name_or_path}: {architecture_name} has no zoo importer; BLIP checkpoints of "
            f"{sorted(ARCHITECTURES)} map to model=blip"
        )
    rules, lacks = ARCHITECTURES[architecture_name]
    tokenizer_source = tokenizer or name_or_path
    loaded = AutoTokenizer.from_pretrained(tokenizer_source, trust_remote_code=trust_remote_code)
    _check_special_tokens(config, loaded, name_or_path)
    text = architecture(config.text_config)
    parts = {
        "encoder": {
            "_target_": ENCODER,
            "config": architecture(config.vision_config),
            "layer": -1,
            "tokens": "all",
            "norm": True,
        },
        "text": {
            "_target_": BLIP_TEXT,
            "_partial_": True,
            "config": text,
            "tokenizer": tokenizer_node(tokenizer_source, trust_remote_code),
            "max_length": min(CAPTION_LENGTH, text["max_position_embeddings"]),
        },
    }
    return Imported(
        "blip",
        parts,
        weights,
        rules,
        name_or_path,
        model_args={"embed_dim": config.image_text_hidden_size},
        allow_unfilled=lacks,
    )


def export_problems(model: nn.Module) -> list[str]:
    """Why ``model`` cannot be written as a transformers BLIP class (empty when it can)."""
    from mmzoo.components.encoders.transformers_encoder import TransformersVisionEncoder
    from mmzoo.models.blip import BlipModel

    if not isinstance(model, BlipModel):
        return [f"not a BLIP model ({type(model).__name__})"]
    enc = model.encoder
    if not (
        isinstance(enc, TransformersVisionEncoder) and enc.model.config.model_type == "blip_vision_model"
    ):
        return [f"the encoder is not a transformers BLIP vision tower ({type(enc).__name__})"]
    if enc.layer not in (-1, enc.model.config.num_hidden_layers) or enc.tokens != "all" or not enc.norm:
        return [
            f"the encoder reads layer {enc.layer}, tokens {enc.tokens!r}, norm {enc.norm}; BLIP reads all tokens "
            "of the last layer through the tower's post_layernorm (encoder.norm=true)"
        ]
    return []


def _config(model: nn.Module) -> BlipConfig:
    text, tokenizer = model.text, model.text.tokenizer
    text_config = text.encoder.config.to_dict()
    text_config.update(
        bos_token_id=text.dec_token_id,  # what the zoo decodes from
        sep_token_id=tokenizer.sep_token_id or tokenizer.eos_token_id,  # where it stops
        pad_token_id=tokenizer.pad_token_id,
        label_smoothing=model.label_smoothing,
    )
    return BlipConfig(
        vision_config=model.encoder.model.config.to_dict(),
        text_config=text_config,
        image_text_hidden_size=model.embed_dim,
    )


def _reference(cls: type) -> Any:
    def reference_for(model: nn.Module) -> tuple[nn.Module, Any]:
        """An empty ``cls`` shaped like the zoo ``model``, and the tokenizer to save with it."""
        return cls(_config(model)), model.text.tokenizer

    return reference_for


CAPTIONING = SimpleNamespace(
    export_problems=export_problems,
    reference_for=_reference(BlipForConditionalGeneration),
    RULES=CAPTIONING_RULES,
)
RETRIEVAL = SimpleNamespace(
    export_problems=export_problems,
    reference_for=_reference(BlipForImageTextRetrieval),
    RULES=RETRIEVAL_RULES,
)
