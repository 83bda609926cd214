"""The zoo LM's pretraining: packed batches are exact, and the image's place holds the scene."""

from __future__ import annotations

import pytest
import torch

from mmzoo.api import build
from mmzoo.data.shapes import make_sample
from mmzoo.lit.language import pack, packed_batch
from mmzoo.objectives.lm import IGNORE_INDEX


def _samples(n: int) -> list[dict]:
    out = []
    for i in range(n):
        _, caption, record = make_sample(i, "train", 0, 8)
        out.append({"caption": caption, "meta": record, "key": record["key"]})
    return out


def test_pack_fills_rows_without_overflow() -> None:
    lengths = [60, 50, 40, 30, 20, 10, 100]
    rows = pack(lengths, capacity=100)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 100 for row in rows)
    assert len(rows) == 4  # 310 tokens need at least 4 rows of 100


def test_packed_loss_equals_the_padded_loss() -> None:
    module = build("lm", ["model.image_text=scene", "model.pack=false"])
    module.eval()
    samples = _samples(24)
    padded = module.collator()(samples)
    module.pack = True
    packed = module.collator()(samples)
    assert packed["input_ids"].numel() < padded["input_ids"].numel()
    assert int((packed["labels"] != IGNORE_INDEX).sum()) == int((padded["labels"][:, 1:] != IGNORE_INDEX).sum())
    with torch.no_grad():
        assert module.loss(packed)[0].item() == pytest.approx(module.loss(padded)[0].item(), abs=1e-5)


def test_packed_sequences_do_not_see_each_other() -> None:
    batch = packed_batch([[5, 6, 7], [8, 9]], capacity=8, pad_id=0)
    mask = batch["attention_mask"][0, 0]  # (L, L)
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 0, 1]
    assert not mask[3:, :3].any() and mask[4, 3] and mask[2, :3].all()
    assert batch["labels"][0].tolist() == [IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9]


def _rendered(image_text: str | None, sample: dict) -> str:
    module = build("lm", [f"model.image_text={image_text or 'null'}"])
    ids = module.collator()([sample])["input_ids"][0]
    return module.model.llm.tokenizer.decode(ids, skip_special_tokens=True)


def test_the_images_place_holds_what_image_text_says() -> None:
    sample = _samples(1)[0]
    scene, caption = sample["meta"]["scene"].replace(";", " ;"), sample["caption"].rstrip(".")
    nothing = _rendered(None, sample)  # the same task and template (seeded by the key), no stand-in
    assert scene not in nothing
    assert _rendered("scene", sample).count(scene) == 1
    assert _rendered("caption", sample).count(caption) == nothing.count(caption) + 1
