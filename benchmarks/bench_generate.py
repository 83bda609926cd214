"""Generation: mmzoo's ``generate`` against transformers' on the same LLM, and stopping at the marker.

    python benchmarks/bench_generate.py [--run RUN_DIR | OVERRIDES...] [--batches 2] [--repeats 3]

Without ``--run``: ``model=llava`` with random parts of the zoo's shapes (no zoo run needed).

The prompts are the evaluation's own (caption and VQA prompts of the first test batches,
left-padded, 128 per batch). Two comparisons, each measured side by side, interleaved:

1. overhead, the same tokens: the module's generation path (bridge -> merged embeddings ->
   LLM ``generate`` with the stop criteria) against the bare transformers model's
   ``generate(inputs_embeds=...)`` from the same embeddings (made beforehand, outside the
   timing), both forced to ``--max-new-tokens`` tokens per row (``min_new_tokens``, the marker's
   tokens suppressed on both sides, so no row stops early): tokens/s
   and the ratio (goal >= 0.95x). The module starts from the images' features (what
   evaluation computes once per batch for all its prompts); a second line starts it from
   pixels, running the vision encoder the bare LLM is spared.
2. stopping: each row stopping at the template's end-of-turn marker while decoding against
   generating to ``max_new_tokens`` and cutting afterwards (what evaluation did before); the
   decoded texts must be identical. Seconds per batch and the ratio. Use a trained run
   (``--run``): an untrained model rarely emits its marker, so both take every step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from itertools import islice

import torch

from mmzoo.api import build, compose_config, from_pretrained
from mmzoo.data.datamodule import ShapesDataModule

# the zoo's CLIP ViT and LM shapes with random weights: no zoo run needed, the same cost per step
RANDOM_ZOO_SHAPES = ["model=llava", "encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null"]


def median_range(values: list[float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a trained run directory (default: build the model from OVERRIDES)")
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("overrides", nargs="*", default=RANDOM_ZOO_SHAPES)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.run:
        module = from_pretrained(args.run)
        label = args.run
    else:
        model = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("model=")), "llava")
        module = build(model, [o for o in args.overrides if not o.startswith("model=")])
        label = " ".join(args.overrides)
    module.eval()
    data = compose_config(["model=llava"]).data
    dm = ShapesDataModule(train_size=data.train_size, test_size=data.test_size, image_size=data.image_size,
                          samples_per_shard=data.samples_per_shard, eval_batch_size=data.eval_batch_size)  # fmt: skip
    dm.attach(module.image_transform(), module.image_transform(), module.collator(), module.collator(False))
    batches = list(islice(dm.test_dataloader(), args.batches))
    prompts = [(b["pixel_values"], b[key]) for b in batches for key in ("caption_prompt", "vqa_prompt") if key in b]
    llm = module.model.llm.model
    n = args.max_new_tokens
    print(f"{label} | template {module.template.name} (end marker {module.template.end_of_turn!r}: "
          f"{len(module.end_of_turn_ids())} token(s)) | {len(prompts)} prompt batches of {prompts[0][0].shape[0]} | "
          f"threads={torch.get_num_threads()}")

    # 1. overhead on the same number of tokens
    embeds = [(module.model.embed(px, p["input_ids"], p.get("instruction_ids"), p.get("instruction_mask")),
               p["attention_mask"]) for px, p in prompts]  # fmt: skip
    # both sides make n tokens per row: no eos before n, and no marker token (which would end a row
    # on our side only; the stop criterion still checks every step)
    forced = {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False, "num_beams": 1,
              "suppress_tokens": sorted(set(module.end_of_turn_ids()))}  # fmt: skip

    with torch.no_grad():
        features = [module.model.image_features(px) for px, _ in prompts]
    bare_options = forced | {"pad_token_id": module.tokenizer.pad_token_id, "eos_token_id": module.tokenizer.eos_token_id}
    ways = {  # each generates one prompt batch i and returns its new token ids
        "ours": lambda i: module._generate_ids(None, prompts[i][1], features=features[i], **forced),
        "bare": lambda i: llm.generate(inputs_embeds=embeds[i][0], attention_mask=embeds[i][1], **bare_options)[:, -n:],
        "pixels": lambda i: module._generate_ids(prompts[i][0], prompts[i][1], **forced),
    }
    rates = interleaved(ways, len(prompts), args.repeats)
    for name, label in (("ours", "from features"), ("pixels", "from pixels")):
        ratios = [a / b for a, b in zip(rates[name], rates["bare"], strict=True)]
        print(f"same tokens ({n} per row), mmzoo {label}: {median_range(rates[name], '{:.0f}')} tokens/s | "
              f"transformers generate {median_range(rates['bare'], '{:.0f}')} tokens/s | "
              f"ratio {median_range(ratios, '{:.3f}')}x")

    # 2. stopping at the marker while decoding, against generating to the end and cutting
    old = {"stopping_criteria": None, "eos_token_id": module.tokenizer.eos_token_id, "max_new_tokens": n}
    ways = {
        "stop": lambda i: module._generate_ids(None, prompts[i][1], features=features[i], max_new_tokens=n),
        "cut": lambda i: module._generate_ids(None, prompts[i][1], features=features[i], **old),
    }
    same = all(module.decode(ways["stop"](i)) == module.decode(ways["cut"](i)) for i in range(len(prompts)))
    steps = {name: sum(way(i).shape[1] for i in range(len(prompts))) / len(prompts) for name, way in ways.items()}
    rates = interleaved(ways, len(prompts), args.repeats, count_tokens=False)  # batches/s
    speed = [a / b for a, b in zip(rates["stop"], rates["cut"], strict=True)]
    print(f"stop at marker: {median_range([1 / r for r in rates['stop']], '{:.3f}')} s/batch, {steps['stop']:.1f} steps | "
          f"generate to {n} then cut: {median_range([1 / r for r in rates['cut']], '{:.3f}')} s/batch, "
          f"{steps['cut']:.1f} steps | {median_range(speed, '{:.2f}')}x | same texts: {same}")


def interleaved(ways: dict, batches: int, repeats: int, count_tokens: bool = True) -> dict[str, list[float]]:
    """Per repeat and way: generated tokens (or batches) per second, the ways taking turns batch
    by batch (in reversed order every other batch) so that a busy machine slows them alike."""
    for way in ways.values():  # warm-up
        way(0)
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        seconds = dict.fromkeys(ways, 0.0)
        tokens = dict.fromkeys(ways, 0)
        for i in range(batches):
            for name, way in list(ways.items())[:: 1 if i % 2 == 0 else -1]:  # the order reversed every other batch
                start = time.perf_counter()
                with torch.no_grad():
                    out = way(i)
                seconds[name] += time.perf_counter() - start
                tokens[name] += out.numel() if count_tokens else 1
        for name in ways:
            rates[name].append(tokens[name] / seconds[name])
    return rates

if __name__ == "__main__":
    main()
