"""Every evaluator on hand-made inputs: a stub module answers exactly what it is asked, so
each metric's value can be computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmzoo.eval import (
    CaptionEvaluator,
    Evaluation,
    PerplexityEvaluator,
    RetrievalEvaluator,
    VQAEvaluator,
    ZeroShotEvaluator,
)
from mmzoo.eval.base import blind_images


class Stub:
    """Answers evaluators from fixed tables: image i has embedding E[i], text i embedding T[i],
    and the caption / answer generated for image i is its own unless the image is blank."""

    device = torch.device("cpu")

    def __init__(self, images: torch.Tensor, texts: torch.Tensor, captions=None, answers=None, itm=None):
        self.images, self.texts = images, texts
        self.captions, self.answers, self.itm = captions, answers, itm

    def _ids(self, pixel_values):
        return [int(p.flatten()[0].round()) - 1 for p in pixel_values]  # id + 1 is written into the pixels

    def retrieval_features(self, batch, texts=True):
        ids = self._ids(batch["pixel_values"])
        out = {"image": self.images[ids]}
        if texts:
            out["text"] = self.texts[batch["text_ids"]]
            if self.itm is not None:
                out["itm_image"] = torch.tensor(ids)[:, None].float()
                out["itm_ids"] = batch["text_ids"][:, None].float()
        return out

    def similarity(self, images, texts):
        return texts @ images.T

    def embed_texts(self, prompts):
        return self.texts[[int(p) for p in prompts]]

    def itm_scores(self, features, images, texts):
        return torch.tensor([self.itm[int(features["itm_ids"][t]), int(features["itm_image"][i])]
                             for i, t in zip(images, texts, strict=True)])

    def generate_text(self, pixel_values, prompt):
        table = self.captions if prompt == "caption" else self.answers
        return ["" if float(p.abs().sum()) == 0 else table[i] for p, i in zip(pixel_values, self._ids(pixel_values), strict=True)]

    def token_loss(self, batch):
        return float(batch["loss"]) * int(batch["tokens"]), int(batch["tokens"])


def image_batch(ids, **extra):
    pixels = torch.stack([torch.full((3, 2, 2), float(i + 1)) for i in ids])
    return {"pixel_values": pixels, "meta": [{"key": str(i)} for i in ids], **extra}


def test_retrieval_recall_by_hand():
    e = torch.eye(4)
    texts = F.normalize(e[[1, 0, 2, 3]] + 0.1 * e, dim=-1)  # texts 0 and 1 point at each other's image first
    ev = RetrievalEvaluator(group_key=None, ks=(1, 2))
    ev.update(_step(Stub(e, texts), image_batch([0, 1, 2, 3], text_ids=torch.arange(4))))
    m = ev.compute(Stub(e, texts), ev.rows)
    assert m["t2i_r1"] == 0.5 and m["i2t_r1"] == 0.5 and m["chance_r1"] == 0.25
    assert m["t2i_r2"] == 1.0 and m["i2t_r2"] == 1.0  # the right one is second


def test_itm_reranking_fixes_the_top_k():
    e = F.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    texts = e[[1, 0, 2]]  # ITC ranks text 0 -> image 1 first
    itm = torch.full((3, 3), -10.0)
    itm.fill_diagonal_(10.0)  # ITM knows the true pairs
    stub = Stub(e, texts, itm=itm)
    ev = RetrievalEvaluator(group_key=None, ks=(1,), rerank_k=2)
    ev.update(_step(stub, image_batch([0, 1, 2], text_ids=torch.arange(3))))
    m = ev.compute(stub, ev.rows)
    assert m["t2i_r1"] < 1.0 and m["itm_t2i_r1"] == 1.0 and m["itm_i2t_r1"] == 1.0


def test_zero_shot_accuracy_by_hand():
    classes = torch.eye(3)
    images = classes[[0, 1, 2, 0]]
    stub = Stub(images, classes)
    task = {"label": "colour", "classes": ["0", "1", "2"], "templates": ["{label}"], "where": {"count": 1}}
    ev = ZeroShotEvaluator({"colour": task})
    labels = [0, 1, 1, 0]  # the third image is class 2, labelled 1: one mistake in four
    batch = image_batch([0, 1, 2, 3])
    batch["meta"] = [{"labels": {"colour": c, "count": 1}} for c in labels]
    ev.update(_step(stub, batch))
    m = ev.compute(stub, ev.rows)
    assert m["colour_acc"] == 0.75 and m["colour_chance"] == pytest.approx(1 / 3)


def test_caption_and_vqa_by_hand_and_per_question_type():
    stub = Stub(None, None, captions=["a red circle.", "a blue square."], answers=["red", "two"])
    batch = image_batch([0, 1], captions=["a red circle.", "a green square."], caption_prompt="caption",
                        vqa_prompt="vqa", questions=["what colour?", "how many?"], answers=["red", "one"],
                        question_types=["colour", "count"])
    cap, vqa = CaptionEvaluator(), VQAEvaluator()
    for ev in (cap, vqa):
        ev.update(_step(stub, batch))
    assert vqa.compute(stub, vqa.rows) == {"accuracy": 0.5, "colour_accuracy": 1.0, "count_accuracy": 0.0}
    captions = cap.compute(stub, cap.rows)
    assert 0 < captions["rouge_l"] < 1 and captions["cider"] > 0
    assert cap.rows[0] == {"key": "0", "captions": "a red circle.", "generated_captions": "a red circle."}


def test_perplexity_is_token_weighted():
    ev = PerplexityEvaluator()
    for loss, tokens in ((1.0, 10), (2.0, 30)):
        ev.update(_step(Stub(None, None), {"loss": loss, "tokens": tokens}))
    m = ev.compute(None, ev.rows)
    assert m["loss"] == pytest.approx(1.75) and m["perplexity"] == pytest.approx(math.exp(1.75))


def test_blind_conditions_really_replace_the_images():
    px = torch.stack([torch.full((3, 2, 2), float(i)) for i in range(1, 4)])
    assert float(blind_images(px, "blank").abs().sum()) == 0
    shuffled = blind_images(px, "shuffled")
    assert all(not torch.equal(shuffled[i], px[i]) for i in range(3))  # nobody keeps their own image
    assert sorted(float(s.flatten()[0]) for s in shuffled) == [1.0, 2.0, 3.0]  # the same images, moved
    with pytest.raises(ValueError, match="valid"):
        blind_images(px, "noise")


def test_evaluation_reports_blind_metrics_beside_the_real_ones():
    stub = Stub(None, None, captions=["a red circle.", "a blue square.", "a green triangle."])
    evaluation = Evaluation({"caption": CaptionEvaluator(), "unused": None}, blind=["blank", "shuffled"])
    evaluation.reset()
    batch = image_batch([1, 2], captions=["a blue square.", "a green triangle."], caption_prompt="caption")
    batch["pixel_values"] = torch.stack([torch.full((3, 2, 2), float(i + 1)) for i in (1, 2)])
    evaluation.update(stub, batch)
    m = evaluation.compute(stub)
    assert m["caption/cider"] > m["caption/cider@shuffled"] and m["caption/cider"] > m["caption/cider@blank"]
    assert evaluation.examples(limit=8)[0]["generated_captions"] == "a blue square."


def _step(module, batch):
    from mmzoo.eval.base import EvalStep

    return EvalStep(module, batch)


def test_grounding_scores_captions_against_the_scene():
    from mmzoo.eval import GroundingEvaluator

    scenes = [[{"colour": "red", "shape": "circle", "position": "left"}],
              [{"colour": "blue", "shape": "square", "position": "top"}]]
    stub = Stub(None, None, captions=["a red circle on the left.", "a green square at the top and a red circle on the left."])
    batch = image_batch([0, 1], caption_prompt="caption")
    batch["meta"] = [{"key": str(i), "objects": s} for i, s in enumerate(scenes)]
    ev = GroundingEvaluator()
    ev.update(_step(stub, batch))
    m = ev.compute(stub, ev.rows)
    # first caption exact; second names a wrong-coloured square and a hallucinated circle
    assert m["scene_accuracy"] == 0.5 and m["object_precision"] == pytest.approx(1 / 3)
    assert m["object_recall"] == 0.5 and m["colour_accuracy"] == 0.5
    no_truth = image_batch([0], caption_prompt="caption")
    ev.update(_step(stub, no_truth))  # records without `objects` (a user's folder): not scored
    assert len(ev.rows) == 2
