import pytest

from mmzoo.eval.captioning import caption_metrics, normalise_answer, vqa_accuracy


def test_identical_captions_score_higher_than_wrong_ones():
    refs = [["a red circle on the left."], ["a blue square on the right."], ["a green triangle on the top."]]
    good = caption_metrics(["A red circle on the left", "a blue square on the right.", "a green triangle on the top"], refs)
    bad = caption_metrics(["a blue square on the top", "a red circle on the left", "two shapes"], refs)
    for key in ("bleu4", "rouge_l", "cider"):
        assert good[key] > bad[key]
    assert good["rouge_l"] == pytest.approx(1.0)


def test_vqa_normalisation():
    assert normalise_answer("The Red.") == "red"
    assert normalise_answer("two") == "2"
    assert vqa_accuracy(["Red", "circle.", "yes it is"], ["red", "circle", "yes"]) == pytest.approx(2 / 3)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        caption_metrics(["a"], [])
    with pytest.raises(ValueError):
        vqa_accuracy(["a"], [])
