import torch
import torch.nn.functional as F

from mmzoo.eval.retrieval import relevance, retrieval_metrics
from mmzoo.eval.zeroshot import class_prompts, matches, zero_shot_accuracy


def test_perfect_embeddings_recall_one():
    x = F.normalize(torch.randn(20, 16), dim=-1)
    m = retrieval_metrics(x, x)
    assert m["t2i_r1"] == 1.0 and m["i2t_r1"] == 1.0
    assert abs(m["chance_r1"] - 1 / 20) < 1e-9


def test_shuffled_embeddings_recall_drops_and_groups_count_duplicates():
    torch.manual_seed(0)
    x = F.normalize(torch.randn(10, 16), dim=-1)
    perm = torch.roll(torch.arange(10), 1)
    m = retrieval_metrics(x, x[perm])
    assert m["t2i_r1"] == 0.0 and m["i2t_r1"] == 0.0
    # if every item is in one group, any retrieval is relevant
    m = retrieval_metrics(x, x[perm], groups=["same"] * 10)
    assert m["t2i_r1"] == 1.0 and m["chance_r1"] == 1.0


def test_relevance_matrix():
    r = relevance(["a", "b", "a"], 3)
    assert r.tolist() == [[True, False, True], [False, True, False], [True, False, True]]


def test_recall_at_k_is_monotone():
    torch.manual_seed(1)
    m = retrieval_metrics(F.normalize(torch.randn(30, 8), dim=-1), F.normalize(torch.randn(30, 8), dim=-1))
    assert m["t2i_r1"] <= m["t2i_r5"] <= m["t2i_r10"]


def test_class_prompts_expand_every_combination():
    prompts = class_prompts(["red", "blue"], ["a {label} {shape} on the {position}."], {"shape": ["circle", "square"], "position": ["left"]})
    assert prompts[0] == ["a red circle on the left.", "a red square on the left."]
    assert len(prompts[1]) == 2 and prompts[1][0].startswith("a blue")


def test_zero_shot_accuracy_and_filter():
    classes = torch.eye(3)
    images = torch.eye(3)[[0, 1, 2, 2]]
    assert zero_shot_accuracy(images, classes, torch.tensor([0, 1, 2, 0])) == 0.75
    assert matches({"labels": {"count": 1}}, {"count": 1})
    assert not matches({"labels": {"count": 2}}, {"count": 1})
