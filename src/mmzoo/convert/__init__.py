"""Real checkpoints in and out of the zoo: importers, parity-checked name mappings, exporters.

    from mmzoo.convert import load_pretrained, export_run
    clip = load_pretrained("openai/clip-vit-base-patch32")           # transformers CLIPModel
    clip = load_pretrained("open_clip:ViT-B-32", pretrained="laion2b_s34b_b79k")
    llava = load_pretrained("llava-hf/llava-1.5-7b-hf", dtype="bfloat16")
    load_projector(llava, "mm_projector.bin")                         # LLaVA / MiniGPT-4 projector files
    export_run("runs/clip/<time>", "exported/")                       # CLIPModel layout, or parts

    blip2 = load_pretrained("Salesforce/blip2-opt-2.7b")                # -> model=blip2 (also BLIP, InstructBLIP)
    minigpt4 = load_pretrained("pretrained_minigpt4.pth", blip2="Salesforce/blip2-flan-t5-xxl",
                               llm="<vicuna dir>")                       # a projector file with its parts

One module per family (``clip``, ``openclip``, ``llava``, ``blip``, ``blip2`` (BLIP-2 and
InstructBLIP), ``projectors`` and ``originals`` (projector files alone, or assembled with
the parts they name)): a key table (``mapping.Rule``) and the part nodes its checkpoints
build. ``load.FAMILIES`` maps a checkpoint's ``model_type`` to its importer,
``export.LAYOUTS`` a transformers class to its exporter.
"""

from mmzoo.convert.checkpoint import ConversionError
from mmzoo.convert.export import export_model, export_run
from mmzoo.convert.load import (
    build_pretrained,
    fill_model,
    load_pretrained,
    pretrained_config,
    read_checkpoint,
)
from mmzoo.convert.projectors import load_projector

__all__ = [
    "ConversionError",
    "build_pretrained",
    "export_model",
    "export_run",
    "fill_model",
    "load_pretrained",
    "load_projector",
    "pretrained_config",
    "read_checkpoint",
]
