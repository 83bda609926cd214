"""The embedded shapes dataset: deterministic, true to the scene, covered by its vocabulary."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from mmzoo.data import shapes
from mmzoo.data.shapes import (
    COLOURS,
    POSITIONS,
    SHAPES,
    caption,
    make_sample,
    record_texts,
    text_corpus,
    vocabulary,
)

WHERE = {
    "on the left": "left",
    "on the right": "right",
    "at the top": "top",
    "at the bottom": "bottom",
    "in the center": "center",
}
N = 400


def objects_of(record: dict) -> list[tuple[str, str, str]]:
    return [(o["colour"], o["shape"], o["position"]) for o in record["objects"]]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [make_sample(i, "train", 0, 32)[2] for i in range(N)]


def test_same_arguments_same_sample() -> None:
    for index in (0, 7, 12345):
        a_img, a_cap, a_rec = make_sample(index, "train", 3, 64)
        b_img, b_cap, b_rec = make_sample(index, "train", 3, 64)
        assert a_img.tobytes() == b_img.tobytes() and a_cap == b_cap and a_rec == b_rec
        assert a_img.size == (64, 64) and a_img.mode == "RGB"


def test_splits_and_seeds_are_different_streams() -> None:
    train = [make_sample(i, "train", 0, 32)[0].tobytes() for i in range(20)]
    test = [make_sample(i, "test", 0, 32)[0].tobytes() for i in range(20)]
    other_seed = [make_sample(i, "train", 1, 32)[0].tobytes() for i in range(20)]
    assert not set(train) & set(test)
    assert not set(train) & set(other_seed)
    with pytest.raises(ValueError, match="split"):
        make_sample(0, "val")


def test_scenes_follow_the_rules(records: list[dict]) -> None:
    counts = Counter(r["labels"]["count"] for r in records)
    assert set(counts) == {1, 2} and 0.4 < counts[1] / N < 0.6
    for r in records:
        objs = objects_of(r)
        assert len({p for _, _, p in objs}) == len(objs) == r["labels"]["count"]
        assert len({(c, s) for c, s, _ in objs}) == len(objs)
        assert [POSITIONS.index(p) for _, _, p in objs] == sorted(POSITIONS.index(p) for _, _, p in objs)
        assert r["labels"]["colour"] == COLOURS.index(objs[0][0])
        assert r["labels"]["shape"] == SHAPES.index(objs[0][1])
        json.dumps(r)  # goes to key.json


def test_caption_is_canonical(records: list[dict]) -> None:
    by_scene: dict[str, set[str]] = {}
    for r in records:
        assert r["caption"] == caption(objects_of(r))
        by_scene.setdefault(r["scene"], set()).add(r["caption"])
        mentioned = re.findall(
            r"an? (\w+) (\w+) (on the left|on the right|at the top|at the bottom|in the center)", r["caption"]
        )
        assert [(c, s, WHERE[w]) for c, s, w in mentioned] == objects_of(r)
    assert all(len(caps) == 1 for caps in by_scene.values())
    assert any(r["caption"].count(" and ") == 1 for r in records)


def check_answer(question: str, answer: str, objs: list[tuple[str, str, str]]) -> None:
    if m := re.fullmatch(r"what colour is the (\w+)(?: (.+))?\?", question):
        matches = [c for c, s, p in objs if s == m[1] and (m[2] is None or WHERE[m[2]] == p)]
        assert matches == [answer], question
    elif m := re.fullmatch(r"what shape is (.+)\?", question):
        assert [s for _, s, p in objs if p == WHERE[m[1]]] == [answer], question
    elif m := re.fullmatch(r"where is the (\w+) (\w+)\?", question):
        assert [p for c, s, p in objs if (c, s) == (m[1], m[2])] == [answer], question
    elif question == "how many shapes are there?":
        assert answer == {1: "one", 2: "two"}[len(objs)]
    elif m := re.fullmatch(r"is there an? (\w+) (\w+)\?", question):
        assert answer == ("yes" if any((c, s) == (m[1], m[2]) for c, s, _ in objs) else "no"), question
    elif m := re.fullmatch(r"is there a (\w+) (.+)\?", question):
        assert answer == ("yes" if any((s, p) == (m[1], WHERE[m[2]]) for _, s, p in objs) else "no"), question
    else:
        raise AssertionError(f"unknown question {question!r}")


def test_qa_is_true_to_the_scene(records: list[dict]) -> None:
    kinds = Counter()
    for r in records:
        assert 3 <= len(r["qa"]) <= 5
        for qa in r["qa"]:
            assert " " not in qa["answer"]
            check_answer(qa["question"], qa["answer"], objects_of(r))
            kinds[qa["answer"] in ("yes", "no")] += 1
    assert kinds[True] and kinds[False]


def test_description_mentions_only_what_is_there(records: list[dict]) -> None:
    for r in records:
        objs = objects_of(r)
        sentences = [s for s in r["description"].split(".") if s.strip()]
        assert 3 <= len(sentences) <= 5, r["description"]
        pairs = {(c, s) for c, s, _ in objs}
        for c, s in re.findall(rf"({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})", r["description"]):
            assert (c, s) in pairs, r["description"]
        n_word = {1: "one", 2: "two"}[len(objs)]
        assert n_word in sentences[0]


def test_conversation_is_llava_format(records: list[dict]) -> None:
    for r in records:
        conv = r["conversation"]
        assert 2 <= len(conv) <= 6 and len(conv) % 2 == 0
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
        assert conv[0]["value"].startswith("<image>\n")
        assert sum("<image>" in t["value"] for t in conv) == 1


def test_vocabulary_covers_every_text(records: list[dict]) -> None:
    vocab = set(vocabulary())
    assert vocab >= set(COLOURS) | set(SHAPES) | set(POSITIONS)
    seen: set[str] = set()
    for r in records + [make_sample(i, "test")[2] for i in range(200)]:
        for text in record_texts(r):
            seen.update(re.findall(r"[a-z]+", text))
    assert seen <= vocab, seen - vocab
    texts = [t for r in records for t in record_texts(r)]
    assert not [t for t in texts if re.search(r"\ba [aeiou]|\ban [^aeiou ]", t)]  # "an orange", "a red"
    assert len(seen) > 0.9 * len(vocab)  # the vocabulary is not padded with unused words


def test_tokenizer_has_no_unknown_words(records: list[dict]) -> None:
    from mmzoo.data.tokenizer import shapes_tokenizer

    tok = shapes_tokenizer()
    for r in records[:50]:
        for text in record_texts(r) + [r["conversation"][0]["value"]]:
            assert tok.unk_token_id not in tok(text)["input_ids"], text


def test_text_corpus_is_deterministic() -> None:
    a = list(text_corpus("train", 20, seed=0))
    assert a == list(text_corpus("train", 20, seed=0))
    assert a != list(text_corpus("test", 20, seed=0))
    assert all(isinstance(t, str) and t and "<image>" not in t for t in a)


def test_objects_are_drawn_where_the_record_says() -> None:
    centre = {
        "left": (0.2, 0.5),
        "right": (0.8, 0.5),
        "top": (0.5, 0.2),
        "bottom": (0.5, 0.8),
        "center": (0.5, 0.5),
    }
    for i in range(50):
        image, _, record = make_sample(i, "train", 0, 64)
        for c, _, p in objects_of(record):
            x, y = centre[p]
            pixel = image.getpixel((int(x * 64), int(y * 64)))
            assert sum(abs(a - b) for a, b in zip(pixel, shapes._RGB[c], strict=True)) < 60, (i, c, p, pixel)
