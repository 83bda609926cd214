"""Generation: mmzoo's ``generate`` against transformers' on the same LLM, and stopping at the marker.

    python benchmarks/bench_generate.py [--run RUN_DIR | OVERRIDES...] [--batches 2] [--repeats 3]

Without ``--run``: ``model=llava`` with random parts of the zoo's shapes (no zoo run needed).

The prompts are the evaluation's own (caption and VQA prompts of the first test batches,
left-padded, 128 per batch). Two comparisons, each measured side by side, interleaved:

1. overhead, the same tokens: the module's generation path (bridge -> merged embeddings ->
   LLM ``generate`` with the stop criteria) against the bare transformers model's
   ``generate(inputs_embeds=...)`` from the same embeddings (made beforehand, outside the
   timing), both forced to ``--max-new-tokens`` tokens per row (``min_new_tokens``): tokens/s
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
    forced = {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False, "num_beams": 1}
    options = {"pad_token_id": module.tokenizer.pad_token_id, "eos_token_id": module.tokenizer.eos_token_id}

    with torch.no_grad():
        features = [module.model.image_features(px) for px, _ in prompts]

    def ours() -> int:
        pairs = zip(features, prompts, strict=True)
        return sum(module._generate_ids(None, p, features=f, **forced).numel() for f, (_, p) in pairs)

    def ours_from_pixels() -> int:
        return sum(module._generate_ids(px, p, **forced).numel() for px, p in prompts)

    def bare() -> int:
        with torch.no_grad():
            return sum(llm.generate(inputs_embeds=e, attention_mask=m, **forced, **options)[:, -n:].numel()
                       for e, m in embeds)  # fmt: skip

    ours(), ours_from_pixels(), bare()  # warm-up
    rates: dict[str, list[float]] = {"ours": [], "pixels": [], "bare": []}
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("bare", bare), ("pixels", ours_from_pixels)):
            start = time.perf_counter()
            tokens = fn()
            rates[name].append(tokens / (time.perf_counter() - start))
    for name, label in (("ours", "from features"), ("pixels", "from pixels")):
        ratios = [a / b for a, b in zip(rates[name], rates["bare"], strict=True)]
        print(f"same tokens ({n} per row), mmzoo {label}: {median_range(rates[name], '{:.0f}')} tokens/s | "
              f"transformers generate {median_range(rates['bare'], '{:.0f}')} tokens/s | "
              f"ratio {median_range(ratios, '{:.3f}')}x")

    # 2. stopping at the marker while decoding, against generating to the end and cutting
    eos = module.tokenizer.eos_token_id
    old = {"stopping_criteria": None, "eos_token_id": eos, "max_new_tokens": n}
    texts_new = [module.decode(module._generate_ids(px, p, max_new_tokens=n)) for px, p in prompts]
    texts_old = [module.decode(module._generate_ids(px, p, **old)) for px, p in prompts]
    same = texts_new == texts_old
    secs_new, secs_old, steps_new, steps_old = [], [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        steps_new.append(sum(module._generate_ids(px, p, max_new_tokens=n).shape[1] for px, p in prompts))
        secs_new.append((time.perf_counter() - start) / len(prompts))
        start = time.perf_counter()
        steps_old.append(sum(module._generate_ids(px, p, **old).shape[1] for px, p in prompts))
        secs_old.append((time.perf_counter() - start) / len(prompts))
    speed = [o / s for o, s in zip(secs_old, secs_new, strict=True)]
    print(f"stop at marker: {median_range(secs_new, '{:.2f}')} s/batch, {steps_new[0] / len(prompts):.1f} steps | "
          f"generate to {n} then cut: {median_range(secs_old, '{:.2f}')} s/batch, {steps_old[0] / len(prompts):.1f} "
          f"steps | {median_range(speed, '{:.2f}')}x | same texts: {same}")


if __name__ == "__main__":
    main()
