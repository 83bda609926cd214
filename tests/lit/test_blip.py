"""The BLIP family as zoo modules: batches, instruction-aware queries, held-out tasks, hand-over,
clear errors, and each model beating its untrained self on the embedded data."""

from __future__ import annotations

import collections

import pytest
import torch

from mmzoo.api import build
from mmzoo.data.conversation import question_type
from mmzoo.data.shapes import make_sample
from mmzoo.rundir import read_metrics, read_weights
from tests.conftest import run_zoo

GENERATIVE_TINY = ["encoder=tiny_clip_vit", "llm=tiny_llama", "model.pretrained_parts=null"]


def samples(module, n=4, start=0):
    transform = module.image_transform()
    out = []
    for i in range(start, start + n):
        image, caption, record = make_sample(i, "train", 0, 32)
        out.append({"key": record["key"], "image": transform(image), "caption": caption, "meta": record})
    return out


def test_identical_scenes_share_a_group_in_the_batch():
    module = build("blip")
    batch = module.collator()(samples(module, 64))
    scenes = [r["scene"] for r in batch["meta"]]
    for i in range(64):
        for j in range(64):
            assert (batch["groups"][i] == batch["groups"][j]) == (scenes[i] == scenes[j])
    assert len(set(scenes)) < 64  # the embedded data repeats scenes: the groups matter


def test_blip_loss_with_a_batch_of_one_names_the_fix():
    module = build("blip")
    with pytest.raises(ValueError, match="larger batch"):
        module.loss(module.collator()(samples(module, 1)))


def test_blip_eval_batch_prompts_the_decoder_and_captions_decode():
    module = build("blip").eval()
    batch = module.collator(train=False)(samples(module, 3))
    assert batch["caption_prompt"]["input_ids"].tolist() == [[module.text_tokenizer.bos_token_id]] * 3
    captions = module.generate_text(batch["pixel_values"], batch["caption_prompt"], max_new_tokens=4)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)


def test_instructblip_gives_its_qformer_the_instruction_and_the_queries_follow_it():
    module = build("instructblip", GENERATIVE_TINY).eval()
    batch = module.collator()(samples(module, 8))
    tok = module.model.bridge.qformer.tokenizer
    decoded = tok.batch_decode(batch["instruction_ids"], skip_special_tokens=True)
    assert all("<image>" not in d for d in decoded) and any("?" in d or "describe" in d for d in decoded)
    px = batch["pixel_values"][:1].expand(2, -1, -1, -1)
    ids = tok(["what colour is the circle?", "how many shapes are there?"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = module.model.visual_embeds(px, ids["input_ids"], ids["attention_mask"])
    assert not torch.allclose(out[0], out[1], atol=1e-5)  # same image, other instruction: other queries
    prompts = module.collator(train=False)(samples(module, 2))
    assert "instruction_ids" in prompts["caption_prompt"] and "instruction_ids" in prompts["vqa_prompt"]


def test_blip2_takes_no_instruction():
    module = build("blip2", GENERATIVE_TINY)
    assert "instruction_ids" not in module.collator()(samples(module, 2))
    with pytest.raises(ValueError, match="without vocab_size|text side"):
        module.model.visual_embeds(torch.randn(1, 3, 32, 32), torch.ones(1, 3, dtype=torch.long))


def test_instruction_awareness_needs_a_qformer_text_side():
    with pytest.raises(Exception, match="bridge.qformer.tokenizer"):  # Hydra wraps it, the message stays
        build("instructblip", [*GENERATIVE_TINY, "~bridge.qformer.tokenizer"])


def test_held_out_question_type_is_never_trained_on():
    module = build("instructblip", GENERATIVE_TINY)
    collate = module.collator()
    kinds = collections.Counter()
    for start in range(0, 200, 50):
        batch = collate(samples(module, 50, start))
        texts = module.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
        kinds.update(question_type(t.split("?")[0].split("\n")[-1].strip() + "?") for t in texts if "?" in t)
    assert kinds["colour"] > 0 and kinds["count"] == 0  # `held_out: [count]`
    assert collate.sample_task.__self__.tasks.keys() == {"caption", "describe", "conversation", "vqa"}


def test_sqrt_mix_weighs_tasks_by_the_root_of_their_size():
    module = build("instructblip", GENERATIVE_TINY)
    collate = module.collator()
    record = samples(module, 1)[0]
    weights = collate.sqrt_weights(record)
    trainable = [q for q in record["meta"]["qa"] if question_type(q["question"]) != "count"]
    assert weights["caption"] == 1.0 and weights["vqa"] == pytest.approx(len(trainable) ** 0.5)
    caption_only = collate.sqrt_weights({"meta": {}})  # a folder of captions offers one task
    assert caption_only == {"caption": 1.0}


def test_encoder_decoder_llm_needs_a_target():
    from mmzoo.data.conversation import _last_supervised_start

    with pytest.raises(ValueError, match="needs a target"):
        _last_supervised_start([-100, -100, -100])


def test_a_stage2_qformer_source_must_be_a_stage1_run(tmp_path):
    """`stage1=<a CLIP run>` fails before training, naming what a stage-1 run is."""
    from safetensors.torch import save_file

    save_file({"encoder.w": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(Exception, match="BLIP-2 stage-1 run"):
        build("blip2", ["encoder=tiny_clip_vit", "llm=tiny_llama", f"model.pretrained_parts.bridge.qformer={tmp_path}"])


@pytest.mark.slow
def test_stage1_hands_its_qformer_to_stage2_bit_identically(blip2_stage1_run):
    module = build("blip2", ["encoder=tiny_clip_vit", "llm=tiny_llama", f"model.pretrained_parts.bridge.qformer={blip2_stage1_run}"])
    trained = read_weights(blip2_stage1_run, "bridge.qformer.")
    own = module.model.bridge.qformer.state_dict()
    assert own and all(torch.equal(v, trained[k]) for k, v in own.items())
    assert module.lineage == {"bridge.qformer": str(blip2_stage1_run)}


@pytest.mark.slow
def test_blip_beats_its_untrained_self(tmp_path):
    untrained = run_zoo(tmp_path / "untrained", ["model=blip", "stage=test", "evaluation.blind=[]"])
    trained = run_zoo(tmp_path / "trained", ["model=blip", "trainer.max_steps=200", "evaluation.blind=[]"])
    m, u = trained["metrics"], untrained["metrics"]
    assert m["retrieval/t2i_r1"] > u["retrieval/t2i_r1"] + 0.1
    assert m["retrieval/itm_t2i_r1"] > u["retrieval/itm_t2i_r1"] + 0.1
    assert m["caption/cider"] > u["caption/cider"] + 0.2
    assert trained["train"]["loss_last"] < trained["train"]["loss_first"]


@pytest.mark.slow
def test_blip2_stage1_beats_its_untrained_self(blip2_stage1_run, clip_run, tmp_path):
    untrained = run_zoo(tmp_path / "untrained", ["experiment=blip2_stage1", f"encoder.from_run={clip_run}", "stage=test"])
    trained = read_metrics(blip2_stage1_run)
    assert trained["metrics"]["retrieval/t2i_r1"] > untrained["metrics"]["retrieval/t2i_r1"] + 0.1


@pytest.mark.slow
@pytest.mark.parametrize("model", ["blip2", "instructblip"])
def test_generative_blip_family_beats_its_untrained_self(model, blip2_stage1_run, clip_run, lm_run, tmp_path):
    parts = [f"model={model}", f"encoder.from_run={clip_run}", f"++llm.from_run={lm_run}",
             f"model.pretrained_parts.bridge.qformer={blip2_stage1_run}", "evaluation.blind=[]"]
    untrained = run_zoo(tmp_path / "untrained", [*parts, "stage=test"])
    trained = run_zoo(tmp_path / "trained", [*parts, "trainer.max_steps=200"])
    assert trained["metrics"]["caption/cider"] > untrained["metrics"]["caption/cider"] + 0.1, (trained, untrained)
    assert trained["lineage"]["bridge.qformer"] == str(blip2_stage1_run)
