"""Reading image files into RGB PIL images, whatever their storage mode.

Real datasets mix grayscale, palette, RGBA, CMYK and 16-bit images with the
usual 8-bit RGB. Backbones want 3-channel 8-bit input, so every image goes
through :func:`load_rgb`, which normalises the mode and raises
:class:`ImageLoadError` (naming the file) for anything unreadable.
"""

import os

import numpy as np

from .errors import OODInputError


#: the advice to skip an unreadable image, appended to the fix of :class:`ImageLoadError`
SKIP_HINT = " or pass skip_failures=True to skip it"


class ImageLoadError(OODInputError):
    """An image file is missing, truncated or not an image, or an object's box in it is unusable.

    ``problem`` says what is wrong, ``fix`` what to do about it, and ``skip_hint`` (starting with its own joining
    words, e.g. :data:`SKIP_HINT`) the advice to skip the item. ``str(e)`` is ``"<problem>; <fix><skip_hint>"``;
    :attr:`skipped_message`, what is recorded for an item that was skipped, leaves the advice to skip out.
    """

    def __init__(self, problem, fix=None, skip_hint=None):
        self.problem, self.fix, self.skip_hint = problem, fix, skip_hint
        super().__init__(f"{self.skipped_message}{skip_hint or ''}")

    @property
    def skipped_message(self):
        """The problem and the fix, without the advice to pass ``skip_failures=True``."""
        return f"{self.problem}; {self.fix}" if self.fix else self.problem

    def __reduce__(self):  # pickled whole (e.g. from a DataLoader worker), not rebuilt from the full message
        return type(self), (self.problem, self.fix, self.skip_hint)


def to_rgb(img):
    """Convert a PIL image of any mode to 8-bit RGB.

    - RGBA / LA / palette with transparency are composited on white, so a
      transparent background does not turn black.
    - 16/32-bit integer and float grayscale (``I;16``, ``I``, ``F``) are
      rescaled by their actual min/max range rather than clipped, which would
      make most 16-bit images pure white.
    """
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr8 = np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    return img.convert("RGB")


def load_rgb(path):
    """Open ``path`` and return a fully decoded 8-bit RGB PIL image, upright.

    The EXIF orientation tag is applied first (``ImageOps.exif_transpose``), so the
    pixels are the ones the FiftyOne App and browsers show: a phone photo stored
    sideways with "rotate 90" in its EXIF is embedded upright.

    Raises :class:`ImageLoadError` naming the file when it is missing or cannot
    be decoded (truncated, corrupt, not an image, or larger than PIL's
    decompression-bomb limit ``Image.MAX_IMAGE_PIXELS``).
    """
    from PIL import Image, ImageOps

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageLoadError(f"image file {path!r} does not exist", "fix the sample's filepath or delete the sample")
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(ImageOps.exif_transpose(img))
    # PIL raises the error above 2x the limit; between 1x and 2x it warns, which raises
    # only where warnings are errors (python -W error).
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"image file {path!r} is refused as a possible decompression bomb ({e})",
                             "if you trust it, raise PIL.Image.MAX_IMAGE_PIXELS", ", else pass skip_failures=True "
                             "to skip it") from e
    except Exception as e:  # any decoder failure is this file's problem, whatever its type
        raise ImageLoadError(f"image file {path!r} could not be decoded ({type(e).__name__}: {e})",
                             "re-export the file", SKIP_HINT) from e


def crop_box(img, box, min_size=1, *, path=None):
    """Crop a FiftyOne relative ``[x, y, w, h]`` box (0..1) out of a PIL image.

    The box is clamped to the image and grown to at least ``min_size`` pixels
    per side so degenerate boxes still give a (tiny) crop instead of failing.
    A box that is not four finite numbers raises :class:`ImageLoadError`
    (naming the image ``path`` when given).
    """
    W, H = img.size
    x, y, w, h = _box_numbers(box, path)
    left = min(max(int(round(x * W)), 0), W - 1)
    top = min(max(int(round(y * H)), 0), H - 1)
    right = max(min(int(round((x + w) * W)), W), left + min_size)
    bottom = max(min(int(round((y + h) * H)), H), top + min_size)
    return img.crop((left, top, min(right, W), min(bottom, H)))


def _box_numbers(box, path):
    """``box`` as four finite floats, else ImageLoadError: the object's box is missing or malformed."""
    try:
        numbers = [float(v) for v in box]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != 4 or not np.isfinite(numbers).all():
        where = f" of an object in image {os.fspath(path)!r}" if path is not None else " of an object"
        raise ImageLoadError(f"bounding_box {box!r}{where} is missing or malformed (not 4 finite numbers)",
                             "give the object a [x, y, w, h] box in 0..1, or remove it")
    return numbers
