import io
import subprocess
import sys

import torch

from mmzoo.api import build
from mmzoo.chat import chat


def test_chat_keeps_the_conversation_and_resets():
    module = build("llava", ["encoder=tiny_clip_vit", "llm=tiny_llama", "model.generation.max_new_tokens=4"])
    seen = []
    original = module.generate

    def spy(images, prompts, **kw):
        seen.append(list(prompts[0]))  # a copy: the chat loop appends the answer afterwards
        return original(images, prompts, **kw)

    module.generate = spy
    image = torch.rand(3, 64, 64)
    from torchvision.transforms.functional import to_pil_image

    out = io.StringIO()
    turns = chat(module, to_pil_image(image), io.StringIO("what colour?\nand the shape?\n/reset\nhello\n/quit\nignored\n"), out)
    assert len(seen) == 3
    assert len(seen[1]) == 3 and seen[1][0]["value"].startswith("<image>")  # history carried
    assert len(seen[2]) == 1  # reset started over, with the image again
    assert out.getvalue().count("assistant:") == 3
    assert len(turns) == 2


def test_chat_cli_help():
    out = subprocess.run([sys.executable, "-m", "mmzoo.chat", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--image" in out.stdout


def test_a_bad_image_path_keeps_the_conversation(tmp_path):
    module = build("llava", ["encoder=tiny_clip_vit", "llm=tiny_llama", "model.generation.max_new_tokens=2"])
    from torchvision.transforms.functional import to_pil_image

    (tmp_path / "not_an_image.jpg").write_text("hello")
    lines = f"what colour?\n/image {tmp_path / 'missing.png'}\n/image {tmp_path / 'not_an_image.jpg'}\n/imgae x\nand now?\n"
    out = io.StringIO()
    turns = chat(module, to_pil_image(torch.rand(3, 32, 32)), io.StringIO(lines), out)
    text = out.getvalue()
    assert text.count("could not open") == 2 and "unknown command '/imgae'" in text
    assert len(turns) == 4  # both questions answered, in one conversation
