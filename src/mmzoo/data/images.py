"""Image bytes to an RGB picture, whatever their mode, within size limits.

Why not ``Image.convert("RGB")``: it drops transparency (what lies under it shows, often
black) and clips 16-bit images (a 16-bit scan turns white). Both the reader (decoding
shards) and the shard writer (re-encoding a user's PNGs as JPEG) go through ``to_rgb``,
so a picture looks the same whichever path it took. PIL and numpy only: the shard-writing
command line imports this without torch.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from mmzoo.data.sample_errors import SampleError

# 8192 x 8192: below PIL's own warning threshold (~89 Mpx), above any photo the zoo's
# models need; a larger header is a bomb or a scan nobody meant to train on
MAX_PIXELS = 8192 * 8192
# web placeholders (1x1 tracking pixels, spacer gifs) carry nothing a caption describes;
# upsampled they become flat images that teach contrastive models noise
MIN_SIDE = 8

_WHITE = (255, 255, 255, 255)
_GRAY = {"1", "L", "LA", "La"}
_PALETTE = {"P", "PA"}
_ALPHA = {"RGBA", "RGBa"}
_DEEP = {"I", "F"}  # and "I;16", "I;16B", "I;16L", "I;16N"


def _scale_to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit and float images to "L": PIL's own conversion clips (a 16-bit scan turns white)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        full = 65535.0
    else:  # "I" (32-bit int, often 16-bit data) and "F": guess the range from the values
        peak = float(np.nanmax(values)) if values.size else 0.0
        full = 1.0 if image.mode == "F" and peak <= 1.0 else 255.0 if peak <= 255 else 65535.0
    scaled = np.nan_to_num(values / full * 255.0, nan=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> tuple[Image.Image, str | None]:
    """``image`` as RGB, and the kind of conversion made (None when it already was RGB).

    Transparency is composited onto white, not dropped (which would show what lies under
    it, often black); 16-bit and float images are scaled, not clipped.
    """
    mode = image.mode
    if mode == "RGB":
        return image, None
    if mode in _DEEP or mode.startswith("I;16"):
        return _scale_to_8bit(image).convert("RGB"), "high_bit_depth"
    kind = (
        "grayscale"
        if mode in _GRAY
        else "palette"
        if mode in _PALETTE
        else "rgba"
        if mode in _ALPHA
        else "cmyk"
        if mode == "CMYK"
        else "other_mode"
    )
    has_alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA") if mode != "La" else image.convert("LA").convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, _WHITE), rgba).convert("RGB"), kind
    return image.convert("RGB"), kind


def decode_image(
    data: bytes, key: str, url: str, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> tuple[Image.Image, str | None]:
    """RGB image of ``data`` and its conversion kind; raises ``too_large``/``too_small``/``corrupt_image``.

    The size is checked from the header, before any pixel is decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exn:
        raise SampleError("too_large", key, url, str(exn)) from exn
    except Exception as exn:  # PIL raises many types for unreadable bytes
        raise SampleError("corrupt_image", key, url, repr(exn)) from exn
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise SampleError("too_large", key, url, f"{width}x{height} > {max_pixels} pixels")
        if min(width, height) < min_side:
            raise SampleError("too_small", key, url, f"{width}x{height}, min side {min_side}")
        try:
            image.load()
            return to_rgb(image)
        except Exception as exn:
            raise SampleError("corrupt_image", key, url, repr(exn)) from exn
