import pytest

from mmzoo.data.shapes import QA_TYPES, caption, make_sample
from mmzoo.eval.grounding import (
    GroundObject,
    caption_grounding,
    parse_caption,
    question_type,
    score_caption,
    vqa_by_type,
)

RED_LEFT = {"colour": "red", "shape": "circle", "position": "left"}
BLUE_BOTTOM = {"colour": "blue", "shape": "square", "position": "bottom"}
SCENE = [RED_LEFT, BLUE_BOTTOM]


def test_parses_the_embedded_caption_grammar():
    assert parse_caption("a red circle on the left and a blue square at the bottom.") == [
        GroundObject("red", "circle", "left"),
        GroundObject("blue", "square", "bottom"),
    ]
    assert parse_caption("an orange triangle in the center.") == [GroundObject("orange", "triangle", "center")]


@pytest.mark.parametrize(
    "text",
    [
        "On the left, there is a red circle. At the bottom, a blue square.",
        "the circle on the left is red; the square at the bottom is blue",
        "A blue square at the bottom and a red circle on the left",  # order of objects does not matter
        "the red circle is on the left and the blue square is at the bottom.",
        "a red circle on the left, and a blue square at the bottom.",
    ],
)
def test_word_order_variants_give_the_same_objects(text):
    assert score_caption(text, SCENE).scenes_exact == 1
    assert caption_grounding([text], [SCENE])["object_precision"] == 1.0


def test_the_shard_captions_score_perfectly_on_their_own_scenes():
    records = [make_sample(i, "test", 0, image_size=8)[2] for i in range(50)]
    scores = caption_grounding([r["caption"] for r in records], [r["objects"] for r in records])
    assert scores["scene_accuracy"] == 1.0
    assert scores["object_precision"] == scores["object_recall"] == 1.0
    assert scores["colour_accuracy"] == scores["shape_accuracy"] == scores["position_accuracy"] == 1.0
    # and a caption of another scene does not: the metric reads the content, not the template
    shifted = [r["caption"] for r in records[1:] + records[:1]]
    assert caption_grounding(shifted, [r["objects"] for r in records])["scene_accuracy"] < 0.1


def test_hallucinated_object_lowers_precision_not_recall():
    text = "a red circle on the left and a blue square at the bottom and a green triangle at the top."
    metrics = caption_grounding([text], [SCENE])
    assert metrics["object_precision"] == pytest.approx(2 / 3)
    assert metrics["object_recall"] == 1.0
    assert metrics["scene_accuracy"] == 0.0


def test_missing_object_lowers_recall_not_precision():
    metrics = caption_grounding(["a red circle on the left."], [SCENE])
    assert metrics["object_precision"] == 1.0
    assert metrics["object_recall"] == 0.5
    assert metrics["scene_accuracy"] == 0.0


def test_wrong_colour_is_an_attribute_error_and_a_hallucination():
    metrics = caption_grounding(["a green circle on the left and a blue square at the bottom."], [SCENE])
    assert metrics["colour_accuracy"] == 0.5  # matched by position: left (wrong), bottom (right)
    assert metrics["shape_accuracy"] == 1.0
    assert metrics["position_accuracy"] == 1.0  # only the blue square has a (colour, shape) anchor
    assert metrics["object_precision"] == 0.5
    assert metrics["scene_accuracy"] == 0.0


def test_wrong_position_is_judged_by_colour_and_shape():
    counts = score_caption("a red circle on the right and a blue square at the bottom.", SCENE)
    assert (counts.position_right, counts.position_judged) == (1, 2)
    assert counts.colour_judged == 1  # nothing is on the right: no anchor for the first object's colour


def test_empty_caption_names_nothing_and_scores_zero():
    metrics = caption_grounding([""], [SCENE])
    assert metrics["object_precision"] == metrics["object_recall"] == metrics["scene_accuracy"] == 0.0
    assert parse_caption("") == []
    assert parse_caption("the background is light and empty.") == []


def test_unknown_words_negations_relations_and_repeats():
    assert parse_caption("a shiny red circle thing on the far left") == [GroundObject("red", "circle", "left")]
    assert parse_caption("there is no green triangle.") == []
    # "to the left of" is a relation, not the circle's position; the repeat refines, not adds
    assert parse_caption("the red circle is to the left of the blue square. the red circle is round.") == [
        GroundObject("red", "circle", None),
        GroundObject("blue", "square", None),
    ]
    assert parse_caption("a red circle in the centre") == [GroundObject("red", "circle", "center")]


def test_incomplete_object_never_makes_an_exact_scene():
    assert score_caption("a circle on the left", [RED_LEFT]).scenes_exact == 0
    assert score_caption("a red circle on the left", [RED_LEFT]).scenes_exact == 1


def test_question_types_from_text_match_the_generator_labels():
    records = [make_sample(i, "train", 0, image_size=8)[2] for i in range(200)]
    pairs = [(qa["question"], qa["type"]) for r in records for qa in r["qa"]]
    assert {t for _, t in pairs} == set(QA_TYPES)
    assert all(question_type(q) == t for q, t in pairs)
    assert question_type("What color is the square?") == "colour"
    assert question_type("describe the image.") == "other"


def test_vqa_accuracy_per_type():
    questions = ["what colour is the circle?", "what colour is the square?", "how many shapes are there?",
                 "is there a red circle?"]
    answers = ["red", "blue", "two", "yes"]
    predictions = ["Red.", "red", "2", "no"]
    out = vqa_by_type(predictions, answers, questions=questions)
    assert out["accuracy"] == 0.5
    assert out["accuracy_colour"] == 0.5 and out["count_colour"] == 2
    assert out["accuracy_count"] == 1.0 and out["accuracy_exists"] == 0.0
    # the data's labels win over the wording; a missing label falls back to it
    typed = vqa_by_type(predictions, answers, questions=questions, types=["shape", None, "count", "exists"])
    assert typed["accuracy_shape"] == 1.0 and typed["accuracy_colour"] == 0.0
    with pytest.raises(ValueError):
        vqa_by_type(["a"], ["a", "b"], questions=["q", "q"])


def test_caption_function_and_parser_agree_on_every_combination():
    from mmzoo.data.shapes import COLOURS, POSITIONS, SHAPES

    for c in COLOURS:
        for s in SHAPES:
            for p in POSITIONS:
                assert parse_caption(caption([(c, s, p)])) == [GroundObject(c, s, p)]
