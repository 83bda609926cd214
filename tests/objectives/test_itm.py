"""Hard-negative mining, ITM pairs and loss; the generalised ITC; decoder targets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmzoo.objectives import (
    ContrastiveLogits,
    contrastive_logits,
    decoder_targets,
    itc_loss,
    itc_loss_from_logits,
    itm_loss,
    itm_pairs,
    mine_hard_negatives,
)
from mmzoo.objectives.lm import IGNORE_INDEX


def _sims(b: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, generator=g) * 5, torch.randn(b, n, generator=g) * 5


def test_mined_negatives_are_never_the_positive_pair() -> None:
    for seed in range(100):
        b = 2 + seed % 7
        sim_i2t, sim_t2i = _sims(b, b, seed)
        # make the positive by far the most similar: a careless sampler would pick it
        sim_i2t += torch.eye(b) * 50
        sim_t2i += torch.eye(b) * 50
        neg = mine_hard_negatives(sim_i2t, sim_t2i, generator=torch.Generator().manual_seed(seed))
        assert not bool((neg.text_for_image == torch.arange(b)).any())
        assert not bool((neg.image_for_text == torch.arange(b)).any())


def test_mined_negatives_avoid_the_whole_group() -> None:
    for seed in range(100):
        g = torch.Generator().manual_seed(seed)
        b = 3 + seed % 6
        groups = torch.randint(0, 3, (b,), generator=g)
        groups[0] = 99  # at least two groups, so every item has a negative
        sim_i2t, sim_t2i = _sims(b, b, seed)
        same = groups[:, None] == groups[None, :]
        sim_i2t[same] += 50  # members of one's own group look most similar
        sim_t2i[same] += 50
        neg = mine_hard_negatives(sim_i2t, sim_t2i, groups=groups, generator=g)
        assert not bool((groups[neg.text_for_image] == groups).any())
        assert not bool((groups[neg.image_for_text] == groups).any())


def test_mining_prefers_similar_candidates_in_softmax_proportion() -> None:
    # 4000 draws at once: every row's own pair is candidate 0 (by far the most similar); among the
    # allowed {1, 2, 3}, candidate 1 has softmax weight e^2 / (e^2 + 2)
    rows = 4000
    sim = torch.tensor([[9.0, 2.0, 0.0, 0.0]]).expand(rows, -1)
    neg = mine_hard_negatives(
        sim, sim, generator=torch.Generator().manual_seed(0), positive_index=torch.zeros(rows, dtype=torch.long)
    )
    expected = math.exp(2) / (math.exp(2) + 2)
    assert abs(float((neg.text_for_image == 1).float().mean()) - expected) < 0.03
    assert int((neg.text_for_image == 0).sum()) == 0 and int((neg.image_for_text == 0).sum()) == 0


def test_mining_a_batch_of_one_or_of_one_group_is_a_clear_error() -> None:
    one = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="batch of one.*larger batch"):
        mine_hard_negatives(one, one)
    four = torch.zeros(4, 4)
    with pytest.raises(ValueError, match="share the group.*larger batch"):
        mine_hard_negatives(four, four, groups=torch.tensor([7, 7, 7, 7]))


def test_mining_over_gathered_candidates_uses_this_ranks_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import mmzoo.objectives.distributed as distributed

    monkeypatch.setattr(distributed, "world", lambda: (1, 2))  # rank 1 of 2: own pairs are columns 3..5
    b = 3
    for seed in range(100):
        sim_i2t, sim_t2i = _sims(b, 2 * b, seed)
        sim_i2t[:, b:] += torch.eye(b) * 50
        sim_t2i[:, b:] += torch.eye(b) * 50
        neg = mine_hard_negatives(sim_i2t, sim_t2i, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(neg.positive_index, torch.arange(b) + b)
        assert not bool((neg.text_for_image == neg.positive_index).any())
        assert not bool((neg.image_for_text == neg.positive_index).any())
    with pytest.raises(ValueError, match="world_size"):
        mine_hard_negatives(torch.zeros(3, 5), torch.zeros(3, 5))


def test_itm_pairs_are_blips_triplet_batch() -> None:
    sim = torch.zeros(3, 3)
    neg = mine_hard_negatives(sim, sim, generator=torch.Generator().manual_seed(0))
    pairs = itm_pairs(neg)
    pos = torch.arange(3)
    assert torch.equal(pairs.labels, torch.tensor([1, 1, 1, 0, 0, 0, 0, 0, 0]))
    assert torch.equal(pairs.image_index, torch.cat([pos, neg.image_for_text, pos]))
    assert torch.equal(pairs.text_index, torch.cat([pos, pos, neg.text_for_image]))
    # every negative-labelled pair really is a mismatch
    assert bool((pairs.image_index[3:] != pairs.text_index[3:]).all())


def test_itm_loss_is_cross_entropy_and_checks_shapes() -> None:
    logits = torch.tensor([[0.0, 3.0], [2.0, -1.0], [0.0, 0.0]])
    labels = torch.tensor([1, 0, 1])
    assert torch.allclose(itm_loss(logits, labels), F.cross_entropy(logits, labels))
    assert itm_loss(torch.tensor([[-20.0, 20.0], [20.0, -20.0]]), torch.tensor([1, 0])) < 1e-6
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        itm_loss(torch.zeros(3, 3), labels)


def test_itc_with_queries_scores_the_best_query() -> None:
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(4, 3, 8, generator=g), dim=-1)  # (B, Q, E)
    txt = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    scale = torch.tensor(5.0)
    sim = torch.einsum("bqe,te->bqt", img, txt).amax(dim=1)  # (B_img, B_txt)
    target = torch.arange(4)
    expected = (F.cross_entropy(scale * sim, target) + F.cross_entropy(scale * sim.T, target)) / 2
    assert torch.allclose(itc_loss(img, txt, scale), expected, atol=1e-6)
    # one query is the plain (B, E) case
    assert torch.allclose(itc_loss(img[:, :1], txt, scale), itc_loss(img[:, 0], txt, scale))


def test_itc_groups_make_identical_captions_joint_positives() -> None:
    g = torch.Generator().manual_seed(1)
    img = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    txt[1] = txt[0]  # items 0 and 1 are the same scene with the same caption
    img[1] = img[0]
    scale = torch.tensor(10.0)
    distinct = torch.arange(4)
    assert torch.allclose(itc_loss(img, txt, scale, groups=distinct), itc_loss(img, txt, scale))
    grouped = itc_loss(img, txt, scale, groups=torch.tensor([0, 0, 1, 2]))
    logits = scale * img @ txt.T
    soft = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    expected = (F.cross_entropy(logits, soft) + F.cross_entropy(logits.T, soft)) / 2
    assert torch.allclose(grouped, expected, atol=1e-6)


def test_itc_groups_pull_a_duplicate_caption_closer_instead_of_pushing_it_away() -> None:
    logits = torch.tensor([[5.0, 1.0, 0.0], [1.0, 5.0, 0.0], [0.0, 0.0, 5.0]], requires_grad=True)
    groups = torch.tensor([0, 0, 1])  # pairs 0 and 1 have the same caption

    def grad(groups: torch.Tensor | None) -> torch.Tensor:
        logits.grad = None
        itc_loss_from_logits(ContrastiveLogits(logits, logits.T, torch.arange(3)), groups).backward()
        return logits.grad.clone()

    assert grad(None)[0, 1] > 0  # plain ITC lowers image 0 <-> caption 1: a false negative
    assert grad(groups)[0, 1] < 0  # grouped ITC raises it: a positive
    assert grad(groups)[0, 2] > 0  # a true negative is still pushed away


def test_itc_label_smoothing_and_width_errors() -> None:
    img = F.normalize(torch.randn(3, 8), dim=-1)
    txt = F.normalize(torch.randn(3, 8), dim=-1)
    logits = 4 * img @ txt.T
    t = torch.arange(3)
    expected = (F.cross_entropy(logits, t, label_smoothing=0.1) + F.cross_entropy(logits.T, t, label_smoothing=0.1)) / 2
    assert torch.allclose(itc_loss(img, txt, torch.tensor(4.0), label_smoothing=0.1), expected, atol=1e-6)
    with pytest.raises(ValueError, match="embedding width"):
        contrastive_logits(img, torch.randn(3, 6), torch.tensor(1.0))


def test_decoder_targets_replace_first_token_and_ignore_pads_and_prompt() -> None:
    ids = torch.tensor([[2, 10, 11, 3, 0], [2, 12, 3, 0, 0]])
    mask = (ids != 0).long()
    dec, labels = decoder_targets(ids, mask, bos_token_id=7)
    assert torch.equal(dec, torch.tensor([[7, 10, 11, 3, 0], [7, 12, 3, 0, 0]]))
    ignore = IGNORE_INDEX
    assert torch.equal(labels, torch.tensor([[7, 10, 11, 3, ignore], [7, 12, 3, ignore, ignore]]))
    _, prompted = decoder_targets(ids, mask, bos_token_id=7, prompt_length=2)
    assert torch.equal(prompted[:, :2], torch.full((2, 2), ignore)) and torch.equal(prompted[:, 2:], labels[:, 2:])
    assert torch.equal(ids[:, 0], torch.tensor([2, 2]))  # the caller's ids are untouched


def test_itc_on_rank_one_of_two_scores_against_the_global_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import mmzoo.objectives.distributed as distributed
    import mmzoo.objectives.itc as itc

    g = torch.Generator().manual_seed(3)
    other_img = F.normalize(torch.randn(2, 8, generator=g), dim=-1)  # rank 0's features
    other_txt = F.normalize(torch.randn(2, 8, generator=g), dim=-1)
    img = F.normalize(torch.randn(2, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(2, 8, generator=g), dim=-1)
    monkeypatch.setattr(distributed, "world", lambda: (1, 2))
    monkeypatch.setattr(itc, "gather_with_grad", lambda x: torch.cat([other_img if x is img else other_txt, x]))
    monkeypatch.setattr(itc, "gather_tensor", lambda x: torch.cat([torch.tensor([5, 6]), x]))
    logits = contrastive_logits(img, txt, torch.tensor(3.0))
    assert torch.equal(logits.positive_index, torch.tensor([2, 3]))
    all_img, all_txt = torch.cat([other_img, img]), torch.cat([other_txt, txt])
    torch.testing.assert_close(logits.per_image, 3 * img @ all_txt.T)
    torch.testing.assert_close(logits.per_text, 3 * txt @ all_img.T)
    expected = (F.cross_entropy(logits.per_image, torch.tensor([2, 3])) + F.cross_entropy(logits.per_text, torch.tensor([2, 3]))) / 2
    torch.testing.assert_close(itc_loss_from_logits(logits), expected)
    # groups are gathered too: local group 5 matches rank 0's first item
    soft = itc_loss_from_logits(logits, groups=torch.tensor([5, 7]))
    targets = torch.tensor([[0.5, 0, 0.5, 0], [0, 0, 0, 1.0]])
    expected_soft = (F.cross_entropy(logits.per_image, targets) + F.cross_entropy(logits.per_text, targets)) / 2
    torch.testing.assert_close(soft, expected_soft)
