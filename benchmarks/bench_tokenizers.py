"""Tokenizers for a user's own captions, side by side: which one should ``data=folder`` use?

    python benchmarks/bench_tokenizers.py [--captions 800] [--vocab 1024 4096 8192]
    python benchmarks/bench_tokenizers.py --train TRAIN_SHARDS TEST_SHARDS [--steps 200] [--seeds 0 1]

Writes ~800 varied, real-looking English captions (not the shapes template) into shards
(3/4 to train on, 1/4 held out), then prints, on the held-out captions and on all of them:
(a) ``caption_bpe_tokenizer`` trained on the training shards, at several vocabulary sizes;
(b) open_clip's bundled BPE (``open_clip.get_tokenizer("ViT-B-32")``, offline);
(c) the shapes word tokenizer: its ``<unk>`` rate.
Columns: vocabulary size, tokens per caption (no BOS/EOS), ``<unk>`` rate, the share of the
vocabulary the captions use, and the embedding parameters at width 64 (the tiny presets).

``--train``: on a folder of captioned images made into shards (e.g. ``python -m
tests.data.captioned_scenes`` then ``python -m mmzoo.data.shards folder``), trains the default
tiny CLIP with each tokenizer (``tokenizer=caption_bpe|open_clip|shapes``), the same steps and
seeds, and prints retrieval R@1 on the test shards, seconds per step and parameters; then a
few steps of the zoo LM (``model=lm``) with each, for its step time and size.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from PIL import Image

from mmzoo.data.shards import ShardWriter
from mmzoo.data.tokenizer import caption_bpe_tokenizer, shapes_tokenizer

PEOPLE = ["a man", "a woman", "an old man", "a young woman", "two children", "a little boy", "a girl",
          "a group of friends", "a street musician", "a chef", "a police officer", "a couple", "a toddler",
          "a tourist", "a skateboarder", "a fisherman", "a nurse", "a construction worker", "three teenagers",
          "an elderly couple", "a runner", "a bride", "a waiter", "a farmer", "a soldier", "a photographer",
          "a barista", "a violinist", "a mail carrier", "a lifeguard", "a gardener", "a plumber", "a pilot",
          "a schoolteacher", "a rock climber", "a beekeeper", "a cyclist", "a lumberjack", "a ballerina"]  # fmt: skip
ANIMALS = ["a brown dog", "a black cat", "a herd of elephants", "two horses", "a flock of seagulls",
           "a golden retriever", "a tabby kitten", "a giraffe", "a zebra", "a cow", "a sheep", "a bear",
           "a pair of ducks", "a parrot", "a squirrel", "a polar bear", "an owl", "a dolphin", "a fox"]  # fmt: skip
THINGS = ["a red bicycle", "a vintage car", "a yellow taxi", "a wooden bench", "a laptop", "a pizza",
          "a bowl of soup", "a stack of pancakes", "a sailboat", "a motorcycle", "a fire hydrant",
          "an umbrella", "a kite", "a surfboard", "a teddy bear", "a clock tower", "a train", "a bus",
          "a birthday cake", "a cup of coffee", "a pair of sneakers", "a guitar", "a tennis racket"]  # fmt: skip
ACTIONS_PEOPLE = ["riding a bicycle", "walking a dog", "playing guitar", "eating a sandwich",
                  "talking on a phone", "reading a newspaper", "throwing a frisbee", "flying a kite",
                  "waiting for a bus", "taking a selfie", "carrying groceries", "holding an umbrella",
                  "surfing a large wave", "skiing down a slope", "cooking dinner", "painting a mural",
                  "jogging along the river", "crossing the street", "sitting on a bench", "laughing together",
                  "repairing a fence", "selling vegetables", "feeding pigeons", "juggling oranges",
                  "shovelling snow", "pushing a stroller", "climbing a ladder", "sketching in a notebook",
                  "tying a shoelace", "hailing a cab", "blowing bubbles", "pitching a tent"]  # fmt: skip
ACTIONS_ANIMALS = ["sleeping on a couch", "running through tall grass", "drinking from a pond",
                   "chasing a ball", "grazing in a field", "looking out of a window", "swimming in the sea",
                   "resting in the shade", "perched on a branch", "playing in the snow"]  # fmt: skip
PLACES = ["in a busy city street", "on a sandy beach", "in a snowy forest", "next to a lake",
          "in a crowded market", "at a train station", "in a small kitchen", "on a mountain trail",
          "in front of an old church", "under a bridge", "in a public park", "at the airport",
          "on a rooftop terrace", "in a library", "at a football stadium", "in a desert", "by the harbour",
          "in a rice field", "on a country road", "inside a museum", "at a night market", "in Tokyo",
          "in downtown Chicago", "near the Eiffel Tower", "on the streets of Rome", "in rural Kenya"]  # fmt: skip
TIMES = ["", "", "", " at sunset", " at night", " on a rainy day", " in the morning", " during winter",
         " under a cloudy sky", " in autumn", " on a sunny afternoon"]  # fmt: skip
ALT_TEXT = [
    "Stock photo of {x} {p}.", "Close-up of {x}.", "{X} {p}{t}.", "A black and white photo of {x} {p}.",
    "Aerial view of {x} {p}.", "Vintage postcard showing {x} {p}.", "Watercolor painting of {x}{t}.",
    "{X}, photographed {p}{t}.", "An illustration of {x} for a children's book.",
    "Product image: {x} on a white background.", "Blurry picture of {x} {p}.",
]  # fmt: skip
FREE = [
    "Fresh croissants and espresso on a marble café table.", "Snow-capped peaks reflected in a still alpine lake.",
    "The new iPhone 15 Pro in titanium blue, $999 at launch.", "Vegan ramen with tofu, bok choy & chili oil.",
    "Living room with Scandinavian furniture and large windows.", "NASA's Artemis rocket on the launch pad.",
    "Hand-knitted wool scarf, 180 cm, available in 4 colours.", "Street food vendor grilling satay skewers in Bangkok.",
    "Wedding couple dancing under string lights.", "Rusty pickup truck abandoned in a wheat field.",
    "A toddler's first steps on the kitchen floor.", "Macro shot of a dewdrop on a spider web.",
    "Vintage 1970s poster for a jazz festival in Montreux.", "Two-bedroom apartment for rent, newly renovated.",
    "Graffiti-covered train passing through an industrial zone.", "Autumn leaves on a cobblestone path in Kyoto.",
    "Homemade sourdough bread cooling on a wire rack.", "Solar panels on the roof of a farmhouse.",
    "Crowd cheering at a U2 concert in Dublin, 2017.", "Minimalist logo design for a coffee brand.",
    "Grandmother teaching her grandson to bake apple pie.", "Empty swimming pool behind a motel in Arizona.",
    "Foggy morning over the Golden Gate Bridge.", "Lineup of electric scooters parked on the sidewalk.",
    "Cherry blossoms framing a pagoda, Nara, Japan.", "Tattooed barista pouring latte art into a ceramic mug.",
    "Old fishermen mending nets on a Portuguese pier.", "Sleek black Tesla charging in an underground garage.",
    "Chess players concentrating in Washington Square Park.", "Hot-air balloons drifting over Cappadocia at dawn.",
    "Bookshelf crammed with paperbacks, plants and vinyl records.", "Firefighters spraying water on a burning warehouse.",
    "Lush green terraces of a tea plantation in Sri Lanka.", "Kids in Halloween costumes trick-or-treating.",
    "Lighthouse battered by storm waves on a rocky coast.", "Neon signs reflected in puddles on a Hong Kong street.",
    "Doctor reviewing an X-ray with a worried patient.", "Close-up of a honeybee collecting pollen from lavender.",
    "Marathon runners crossing the finish line, exhausted but smiling.", "Cozy cabin with smoke rising from the chimney.",
    "Beautiful bride with a bouquet of peonies and eucalyptus.", "Ancient Roman aqueduct spanning a green valley.",
    "Teenager doing a kickflip at an empty skate park.", "Assorted sushi rolls with wasabi and pickled ginger.",
    "Penguins huddled together on an Antarctic ice shelf.", "Steam locomotive crossing a stone viaduct in Scotland.",
    "Cluttered workbench with soldering iron and circuit boards.", "Farmers' market stall overflowing with heirloom tomatoes.",
    "Silhouette of a lone tree against a purple twilight sky.", "Office workers brainstorming with sticky notes on glass.",
    "Labrador puppy chewing on a slipper.", "Flamenco dancer in a red ruffled dress mid-spin.",
    "Bright yellow kayak on a turquoise glacial river.", "Victorian townhouses painted in pastel colours.",
    "Basketball player dunking during the championship game.", "Overhead shot of a breakfast spread with avocado toast.",
    "Monks in saffron robes walking barefoot at dawn.", "Abandoned amusement park overgrown with ivy.",
    "Woman practising yoga on a paddleboard.", "Rows of wind turbines on rolling hills in Denmark.",
    "Handmade ceramic bowls drying on a wooden shelf.", "Police horses patrolling a crowded festival.",
    "Moose wading through a misty marsh in Alaska.", "Skyline of Dubai with the Burj Khalifa piercing the clouds.",
    "Tired commuters on a packed subway car.", "Child blowing dandelion seeds in a meadow.",
    "Antique typewriter next to a stack of handwritten letters.", "Camel caravan crossing the dunes of the Sahara.",
    "Freshly painted nails in glossy coral pink.", "Volunteers planting mangrove seedlings on the shore.",
    "Thunderstorm with lightning striking over the prairie.", "Vintage Vespa parked outside a trattoria.",
    "Graduates throwing their caps in the air.", "Koala clinging to a eucalyptus branch.",
    "Snowboarder launching off a jump in the backcountry.", "Barbecue ribs glazed with smoky sauce.",
    "Mechanic repairing the engine of a classic Mustang.", "Crowded beach in Rio de Janeiro on New Year's Eve.",
    "Blue-footed booby on the Galápagos Islands.", "Musician tuning a cello before a rehearsal.",
    "Frosted window with a view of a snowy street.", "Baby elephant following its mother through the savanna.",
    "Medieval castle perched on a cliff above the Rhine.", "Scientist pipetting samples in a sterile laboratory.",
    "Colourful spices in burlap sacks at a Moroccan souk.", "Minimal workspace with a MacBook and a succulent.",
    "Children's drawings taped to a refrigerator door.", "Long exposure of car headlights on a mountain pass.",
]  # fmt: skip


def make_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct captions: COCO-like sentences, alt-text styles and free-form web captions."""
    rng = random.Random(seed)
    out: list[str] = list(FREE)
    seen = set(out)
    while len(out) < n:
        kind = rng.random()
        place, time = rng.choice(PLACES), rng.choice(TIMES)
        if kind < 0.4:
            caption = f"{rng.choice(PEOPLE)} {rng.choice(ACTIONS_PEOPLE)} {place}{time}."
        elif kind < 0.6:
            caption = f"{rng.choice(ANIMALS)} {rng.choice(ACTIONS_ANIMALS)} {place}{time}."
        elif kind < 0.75:
            caption = f"{rng.choice(THINGS)} and {rng.choice(THINGS)} {place}{time}."
        else:
            x = rng.choice(PEOPLE + ANIMALS + THINGS)
            caption = rng.choice(ALT_TEXT).format(x=x, X=x[0].upper() + x[1:], p=place, t=time)
        caption = caption[0].upper() + caption[1:]
        if caption not in seen:
            seen.add(caption)
            out.append(caption)
    rng.shuffle(out)
    return out


def write_shards(captions: list[str], out: Path) -> Path:
    with ShardWriter(out, samples_per_shard=200) as writer:
        for i, caption in enumerate(captions):
            writer.write(Image.new("RGB", (8, 8), (i % 256, 0, 0)), caption)
    return out


def row(name: str, vocab: int, lengths: list[int], unk: int, used: set[int]) -> str:
    total = sum(lengths)
    return (
        f"{name:<28} {vocab:>7} {total / len(lengths):>8.2f} {unk / max(total, 1):>7.1%} "
        f"{len(used) / vocab:>7.1%} {vocab * 64 / 1e6:>8.2f}M"
    )


TOKENIZERS = ("caption_bpe", "open_clip", "shapes")


def train_side_by_side(train: str, test: str, steps: int, seeds: list[int], lm_steps: int) -> None:
    """CLIP (retrieval R@1, s/step) and the zoo LM (s/step) with each tokenizer, one process."""
    import statistics

    from mmzoo.api import compose_config
    from mmzoo.run import train_and_evaluate

    data = [f"data.train={train}", f"data.test={test}", "data=folder", "data.batch_size=64", "data.num_workers=1",
            "trainer.max_epochs=-1", "trainer.enable_progress_bar=false"]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in TOKENIZERS:
            r1, seconds, params = [], [], 0
            for seed in seeds:
                cfg = compose_config([*data, f"tokenizer={name}", f"trainer.max_steps={steps}", f"seed={seed}"])
                m = train_and_evaluate(cfg, Path(tmp) / f"clip-{name}-{seed}")
                r1.append((m["metrics"]["retrieval/t2i_r1"] + m["metrics"]["retrieval/i2t_r1"]) / 2)
                seconds.append(m["train"]["seconds"] / steps)
                params = m["params"]["total"]
            lm = train_and_evaluate(compose_config([*data, "model=lm", f"tokenizer={name}",
                                                    f"trainer.max_steps={lm_steps}"]), Path(tmp) / f"lm-{name}")  # fmt: skip
            rows.append((name, r1, statistics.mean(seconds), params, lm["train"]["seconds"] / lm_steps,
                         lm["params"]["total"]))  # fmt: skip
    chance = m["metrics"]["retrieval/chance_r1"]
    base = rows[0]
    print(f"\nCLIP {steps} steps x batch 64, seeds {seeds}; R@1 = mean of t2i and i2t (chance {chance:.3f})")
    print(f"{'tokenizer':<12} {'R@1 per seed':<22} {'mean':>6} {'s/step':>7} {'ratio':>6} {'params':>10} "
          f"{'LM s/step':>9} {'ratio':>6} {'LM params':>10}")  # fmt: skip
    for name, r1, sec, params, lm_sec, lm_params in rows:
        per_seed = " ".join(f"{v:.3f}" for v in r1)
        print(f"{name:<12} {per_seed:<22} {sum(r1) / len(r1):>6.3f} {sec:>7.3f} {sec / base[2]:>5.2f}x {params:>10,} "
              f"{lm_sec:>9.3f} {lm_sec / base[4]:>5.2f}x {lm_params:>10,}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=800)
    parser.add_argument("--vocab", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--train", nargs=2, metavar=("TRAIN_SHARDS", "TEST_SHARDS"), default=None)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--lm-steps", type=int, default=30)
    args = parser.parse_args()
    if args.train:
        train_side_by_side(*args.train, args.steps, args.seeds, args.lm_steps)
        return
    import open_clip

    captions = make_captions(args.captions)
    split = len(captions) * 3 // 4
    train, held_out = captions[:split], captions[split:]
    words = len({w for c in captions for w in c.lower().split()})
    print(f"{len(captions)} captions ({len(train)} train / {len(held_out)} held out), {words} distinct words")
    print("e.g.", *captions[:4], sep="\n  ")
    with tempfile.TemporaryDirectory() as tmp:
        shards = write_shards(train, Path(tmp) / "train")
        for name, texts in (("held-out", held_out), ("all", captions)):
            print(f"\n{name}: {'tokenizer':<20} {'vocab':>7} {'tok/cap':>8} {'<unk>':>7} {'used':>7} {'emb@64':>9}")
            for size in args.vocab:
                bpe = caption_bpe_tokenizer(shards, vocab_size=size, cache_dir=tmp)
                ids = [bpe(t, add_special_tokens=False).input_ids for t in texts]
                used = {i for seq in ids for i in seq}
                unk = sum(seq.count(bpe.unk_token_id) for seq in ids)
                print(row(f"caption BPE (asked {size})", len(bpe), [len(s) for s in ids], unk, used))
            clip = open_clip.get_tokenizer("ViT-B-32")
            ids = [clip.encode(t) for t in texts]
            print(row("open_clip BPE", len(clip.encoder), [len(s) for s in ids], 0, {i for s in ids for i in s}))
            shapes = shapes_tokenizer()
            ids = [shapes(t, add_special_tokens=False).input_ids for t in texts]
            unk = sum(seq.count(shapes.unk_token_id) for seq in ids)
            print(row("shapes words", len(shapes), [len(s) for s in ids], unk, {i for s in ids for i in s}))


if __name__ == "__main__":
    main()
