import math

import torch
import torch.nn.functional as F

from mmzoo.objectives import itc_loss, lm_loss
from mmzoo.objectives.lm import IGNORE_INDEX


def test_itc_matches_clip_reference_formula():
    torch.manual_seed(0)
    img = F.normalize(torch.randn(6, 8), dim=-1)
    txt = F.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(10.0)
    logits = scale * img @ txt.T
    target = torch.arange(6)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert torch.allclose(itc_loss(img, txt, scale), expected, atol=1e-6)


def test_itc_is_low_for_aligned_pairs_and_chance_for_identical_rows():
    eye = torch.eye(4)
    assert itc_loss(eye, eye, torch.tensor(100.0)) < 1e-3
    same = F.normalize(torch.ones(4, 4), dim=-1)
    assert math.isclose(float(itc_loss(same, same, torch.tensor(100.0))), math.log(4), rel_tol=1e-5)


def test_itc_gradient_reaches_both_towers():
    img = torch.randn(4, 8, requires_grad=True)
    txt = torch.randn(4, 8, requires_grad=True)
    itc_loss(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), torch.tensor(5.0)).backward()
    assert img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0


def test_lm_loss_ignores_masked_positions_and_shifts():
    vocab = 5
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4]])
    logits = torch.zeros(1, 4, vocab)
    logits[0, 1, 3] = 20.0  # position 1 predicts token 3 (label at position 2)
    logits[0, 2, 4] = 20.0  # position 2 predicts token 4
    logits[0, 0, 1] = -50.0  # would be a huge loss if position 0's target were counted
    assert lm_loss(logits, labels) < 1e-6
    logits[0, 2] = 0.0
    assert math.isclose(float(lm_loss(logits, labels)), math.log(vocab) / 2, rel_tol=1e-4)
