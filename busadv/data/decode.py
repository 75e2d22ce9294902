"""Any image file -> one uint8 grayscale square at the working size, in bounded memory.

Why bounded: an upload or a file in a data folder may be a decompression bomb (a few hundred KB that
decode to gigapixels) or simply a huge 16-bit scan. The pixel count is checked from the header before
any pixel is decoded, JPEGs decode straight at a reduced scale, and images are shrunk by an integer
factor in their own mode before any conversion, so no full-resolution float copy is ever made.
"""

from __future__ import annotations

import io
import os
import re
import warnings

import numpy as np
from PIL import Image

# Far above any ultrasound frame (BUSI's are about 500x600): 5000 x 5000.
MAX_DECODE_PIXELS = 25_000_000
MAX_ASPECT = 20  # longer side / shorter side; BUSI's frames are within 2:1
# Pillow's own bomb check stays on; its warning becomes an error so no bomb is half-decoded.
Image.MAX_IMAGE_PIXELS = MAX_DECODE_PIXELS
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


class ImageRejected(ValueError):
    """An image refused before decoding (too many pixels); the message says why."""


def _too_large(what: str) -> ImageRejected:
    return ImageRejected(f"image of {what} pixels refused: busadv decodes at most "
                         f"{MAX_DECODE_PIXELS // 1_000_000} million pixels, far more than any ultrasound frame "
                         f"(a small file that claims this many is a decompression bomb)")


def _open(source: str | os.PathLike | bytes | Image.Image) -> Image.Image:
    """Image.open with Pillow's bomb check turned into busadv's refusal.

    Why: Pillow checks the header's pixel count inside Image.open, before decode_image can look at
    the size itself, and words it as a warning or a "DOS attack" error; users get one message, the
    same for every oversized file, naming the limit. Pillow closes the file when it refuses.
    """
    if isinstance(source, Image.Image):
        return source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if isinstance(source, (bytes, bytearray)):
                return Image.open(io.BytesIO(source))
            return Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(f"{int(found.group(1)):,}" if found else "too many") from None


def _check_size(image: Image.Image) -> None:
    width, height = image.size
    if width * height > MAX_DECODE_PIXELS:
        raise _too_large(f"{width} x {height}")
    if width < 1 or height < 1:
        raise ImageRejected("image has no pixels")
    if max(width, height) > MAX_ASPECT * min(width, height) and max(width, height) > 1000:
        # Pillow keeps a pointer and a block per row: a 1 x 25,000,000 sliver costs ~220 MB to load, though
        # it holds only 25 MB of pixels. No ultrasound frame is such a sliver.
        raise ImageRejected(f"image of {width} x {height} pixels refused: its sides differ more than "
                            f"{MAX_ASPECT}-fold, which no ultrasound frame does")


def _to_gray(image: Image.Image) -> Image.Image:
    """Mode conversion on an already reduced image: 16-bit scaled to 8 bits, transparency onto black."""
    if image.mode in _SIXTEEN_BIT:
        arr = np.asarray(image, dtype=np.float32)
        if not np.isfinite(arr).all():  # a float TIFF with NaN or inf: no gray level to give them
            raise ImageRejected("the image holds NaN or infinite pixel values (a floating-point TIFF?), which have "
                                "no gray level")
        top = 65535.0 if float(arr.max(initial=0)) > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image if image.mode == "L" else image.convert("L")


def _decoded(source: str | os.PathLike | bytes | Image.Image, draft: int, keep: int, longer: bool,
             size: int | None) -> np.ndarray:
    """The bounded-memory decode: shrunk by an integer factor while the shorter (or, with `longer`, the longer)
    side keeps at least `keep` pixels, made grayscale, then resized to size x size when a size is given."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open(source)
        try:
            _check_size(image)
            if image.format == "JPEG":
                image.draft("L", (draft, draft))  # DCT scaling: decodes at 1/2, 1/4 or 1/8 when that still covers it
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                image = image.convert("I")  # reduce() needs a native mode; 4 bytes/pixel under the cap above
            elif image.mode in ("1", "P"):
                image = image.convert("RGBA" if image.mode == "P" else "L")
            factor = max(1, (max(image.size) if longer else min(image.size)) // keep)
            width, height = image.size
            # A sliver (1 x 25,000,000) keeps its long side after that: reduced on that axis alone as well, else
            # the resize below allocates hundreds of MB. Ordinary frames (within 8:1) are reduced exactly as before.
            extra = [max(1, side // factor // keep) if side // factor > 8 * keep else 1 for side in (width, height)]
            factors = (factor * extra[0], factor * extra[1])
            if factors != (1, 1):
                image = image.reduce(factors)  # box average in the image's own mode
            image = _to_gray(image)
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
            return np.asarray(image, dtype=np.uint8).copy()
        finally:
            if not isinstance(source, Image.Image):
                image.close()


def decode_image(source: str | os.PathLike | bytes | Image.Image, size: int) -> np.ndarray:
    """Any PIL-readable image (L, RGB, RGBA, 16-bit, palette) -> uint8 [size, size] grayscale.

    ImageRejected (a ValueError) when the header promises too many pixels; Pillow's own errors
    (OSError, SyntaxError, ValueError) for files that are not images: READ_ERRORS holds them all.
    """
    return _decoded(source, draft=size, keep=2 * size, longer=False, size=size)  # reduced to >= 2x the target


def decode_full(source: str | os.PathLike | bytes | Image.Image, max_side: int = 1024) -> np.ndarray:
    """The image as a person sees it: uint8 grayscale in its own aspect ratio, shrunk by an integer factor only
    when its longer side exceeds 2 x max_side (the explorer shows it beside the model's square input)."""
    return _decoded(source, draft=max_side, keep=max_side, longer=True, size=None)


# What reading one image file may raise: a data folder skips the file by name, an upload is refused.
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
                                                Image.DecompressionBombWarning)
