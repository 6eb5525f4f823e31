"""Reading image files into RGB PIL images, whatever their storage mode.

Real datasets mix grayscale, palette, RGBA, CMYK and 16-bit images with the
usual 8-bit RGB, and photos whose embedded ICC colour profile is not sRGB (Display
P3 from phones, Adobe RGB from cameras, print CMYK). Backbones want 3-channel 8-bit
sRGB input, so every image goes through :func:`load_rgb`, which converts the colours
to sRGB (:func:`to_srgb`), normalises the mode and raises :class:`ImageLoadError`
(naming the file) for anything unreadable. A large JPEG can be decoded at a reduced
scale when the caller needs fewer pixels (``min_side``, :func:`decode_size`).
"""

import hashlib
import io
import os
import stat

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
    """Convert a PIL image of any mode to 8-bit sRGB.

    - An RGB, RGBA, palette or CMYK image with an embedded ICC colour profile has its colours converted to sRGB
      first, as browsers and the App show them (:func:`to_srgb`).
    - RGBA / LA / palette with transparency are composited on white, so a
      transparent background does not turn black; so are grayscale and RGB
      images with a transparent colour key (a PNG ``tRNS`` chunk, a grayscale
      GIF), whose keyed pixels browsers and the App show transparent: the same
      picture with an alpha channel gives the same pixels.
    - 16/32-bit integer and float grayscale (``I;16``, ``I``, ``F``) are
      rescaled by their actual min/max range rather than clipped, which would
      make most 16-bit images pure white; pixels at a transparent colour key
      are white and stay out of that range. Pixels without a finite value (NaN,
      a float image's "no data") take the lowest value, infinities the ends.
    """
    from PIL import Image

    if img.mode in ("P", "L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "P" and img.info.get("icc_profile"):  # the palette's colours are in the profile's space
        img = img.convert("RGB")
    img = to_srgb(img)
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        keyed = _keyed_pixels(img, arr)
        finite = np.isfinite(arr) & ~keyed
        lo, hi = (float(arr[finite].min()), float(arr[finite].max())) if finite.any() else (0.0, 0.0)
        arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr8 = np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)
        arr8[keyed] = 255  # a transparent colour key shows the white background, as for 8-bit images
        return Image.fromarray(arr8, mode="L").convert("RGB")
    return img.convert("RGB")


#: the image modes whose ICC profile :func:`to_srgb` applies, and the mode each becomes
_MANAGED_MODES = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB"}
#: the colour space (ICC header) a profile must describe to apply to an image of each managed mode
_PROFILE_SPACES = {"RGB": "RGB ", "RGBA": "RGB ", "CMYK": "CMYK"}
#: (the profile bytes' digest, image mode) -> the transform to sRGB, or None where the profile is not applied
_SRGB_TRANSFORMS = {}
_MAX_CACHED_PROFILES = 64
_NOT_BUILT = object()


def to_srgb(img):
    """``img`` with the colours of its embedded ICC profile (``img.info["icc_profile"]``) converted to sRGB.

    A network pretrained on sRGB photos should see the colours a viewer shows: browsers, and so the FiftyOne App,
    convert an image's pixels from its profile to the screen's, while the raw numbers of a Display P3 or Adobe RGB
    photo are those of a wider colour space (its saturated colours look washed out read as sRGB, on average 12 of
    255 levels off), and a CMYK image's without its profile are a naive ink formula. Converted here with
    LittleCMS (``PIL.ImageCms``, perceptual intent): an RGB or CMYK image becomes RGB, an RGBA one keeps its alpha.
    An RGB profile goes through LittleCMS's precalculated transform (within one level; 0.16-0.17 s per 12-megapixel
    image), a CMYK one is evaluated exactly at every pixel (2.4-2.7 s; ``benchmarks/colour_profiles.py``).

    ``img`` itself comes back, untouched, when there is nothing to convert: no profile, another mode (grayscale,
    16-bit), a profile of another colour space than the pixels' (an RGB profile on a CMYK image), one LittleCMS
    cannot read (browsers then show the raw numbers too), or one that maps every colour to within one level of
    itself (an sRGB profile: a camera's own copy of it leaves the pixels exactly as they were). The result carries
    no profile, so converting it again changes nothing. Transforms are built once per distinct profile.
    """
    icc = img.info.get("icc_profile")
    if not icc or not isinstance(icc, (bytes, bytearray)) or img.mode not in _MANAGED_MODES:
        return img
    key = (hashlib.sha1(icc).digest(), img.mode)
    transform = _SRGB_TRANSFORMS.get(key, _NOT_BUILT)  # one lookup: another thread may clear the cache meanwhile
    if transform is _NOT_BUILT:
        transform = _srgb_transform(icc, img.mode)
        if len(_SRGB_TRANSFORMS) >= _MAX_CACHED_PROFILES:
            _SRGB_TRANSFORMS.clear()
        _SRGB_TRANSFORMS[key] = transform
    if transform is None:
        return img
    from PIL import ImageCms

    out = ImageCms.applyTransform(img, transform)
    out.info = {k: v for k, v in img.info.items() if k != "icc_profile"}
    return out


def _srgb_transform(icc, mode):
    """The LittleCMS transform from the profile ``icc`` to sRGB for images of ``mode``; None when not to apply it."""
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if source.profile.xcolor_space != _PROFILE_SPACES[mode]:
            return None
        # a CMYK profile's tables are evaluated at every pixel: LittleCMS's precalculated table of the whole
        # transform was up to 10 levels off near black, which moved the scores (benchmarks/colour_profiles.py)
        flags = ImageCms.Flags.NOOPTIMIZE if mode == "CMYK" else ImageCms.Flags.NONE
        transform = ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), mode, _MANAGED_MODES[mode],
                                            renderingIntent=ImageCms.Intent.PERCEPTUAL, flags=flags)
    except Exception:  # noqa: BLE001 - a damaged or unsupported profile (PyCMSError, OSError, ...) is ignored,
        return None  # as browsers ignore it: the raw numbers are the best guess of the colours
    if mode != "CMYK" and _moves_no_colour(transform, mode):
        return None
    return transform


def _moves_no_colour(transform, mode):
    """True when ``transform`` (RGB or RGBA to sRGB) maps a grid of 4,096 colours to within one level of each."""
    from PIL import Image, ImageCms

    levels = np.linspace(0, 255, 16).round().astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(64, 64, 3)
    probe = Image.fromarray(grid, "RGB").convert(mode)
    moved = np.asarray(ImageCms.applyTransform(probe, transform), np.int16)[..., :3]
    return int(np.abs(moved - grid.astype(np.int16)).max()) <= 1


def _keyed_pixels(img, arr):
    """Where a 16/32-bit grayscale image's pixels equal its transparent colour key (a PNG ``tRNS`` value)."""
    key = img.info.get("transparency")
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return arr == float(key)
    return np.zeros(arr.shape, dtype=bool)


def load_rgb(path, min_side=None):
    """Open ``path`` and return a fully decoded 8-bit sRGB PIL image, upright.

    ``min_side`` (pixels; None: full size): the size both sides of the image must keep for what comes next
    (:func:`decode_size` of the transform). A JPEG at least twice that on both sides is decoded at a reduced scale
    (libjpeg's scaled decoding, 1/2, 1/4 or 1/8: ``Image.draft``), the smallest that keeps both sides at least
    ``min_side``: a 12-megapixel phone photo in a fraction of the time, for an embedding that differs from the full
    decode's about as much as re-saving the file does (``benchmarks/bench_jpeg_decode.py``).

    The EXIF orientation tag is applied first (``ImageOps.exif_transpose``), and the
    colours of an embedded ICC profile are converted to sRGB (:func:`to_rgb`), so the
    pixels are the ones the FiftyOne App and browsers show: a phone photo stored
    sideways with "rotate 90" in its EXIF is embedded upright, a Display P3 one in
    the colours it shows.

    Raises :class:`ImageLoadError` naming the file when it is missing, a folder,
    not readable by this user (its permissions, or a folder's on the way), empty or
    cannot be decoded (truncated, corrupt, not an image, or larger than PIL's
    decompression-bomb limit ``Image.MAX_IMAGE_PIXELS``).
    """
    from PIL import Image, ImageOps

    path = os.fspath(path)
    try:
        info = os.stat(path)
    except PermissionError as e:  # a folder on the way this user may not enter: the file is there, or may be
        raise not_readable(path, e, "fix the permissions of the file and of its folders (e.g. chmod a+rx on each "
                           "folder, a+r on the file)") from e
    except (OSError, ValueError):  # no such file, a file on the way taken for a folder, a NUL in the path
        info = None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise ImageLoadError(f"image file {path!r} is a folder, not an image file",
                             "fix the sample's filepath (the image inside the folder?) or delete the sample")
    if info is None or not stat.S_ISREG(info.st_mode):
        raise ImageLoadError(f"image file {path!r} does not exist", "fix the sample's filepath or delete the sample")
    if info.st_size == 0:  # PIL would say "cannot identify image file"
        raise ImageLoadError(f"image file {path!r} is empty (0 bytes)",
                             "copy or download it again (an interrupted transfer?)", SKIP_HINT)
    try:
        with Image.open(path) as img:
            if min_side and img.format == "JPEG":
                img.draft(img.mode, (min_side, min_side))
            img.load()
            return to_rgb(ImageOps.exif_transpose(img))
    except PermissionError as e:  # not a decoding problem: re-exporting the file would not help
        raise not_readable(path, e, "fix the file's permissions (e.g. chmod a+r)") from e
    # PIL raises the error above 2x the limit; between 1x and 2x it warns, which raises
    # only where warnings are errors (python -W error).
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"image file {path!r} is refused as a possible decompression bomb ({e})",
                             "if you trust it, raise PIL.Image.MAX_IMAGE_PIXELS", ", else pass skip_failures=True "
                             "to skip it") from e
    except Exception as e:  # any decoder failure is this file's problem, whatever its type
        raise ImageLoadError(f"image file {path!r} could not be decoded ({type(e).__name__}: {e})",
                             "re-export the file", SKIP_HINT) from e


def not_readable(path, error, fix):
    """The :class:`ImageLoadError` of a file this user may not read (``error``: the ``PermissionError``)."""
    return ImageLoadError(f"image file {path!r} cannot be read by this user ({type(error).__name__}: "
                          f"{error.strerror or error})", f"{fix}, or run as a user who may read it",
                          SKIP_HINT)


#: how many times longer than its short side an image may be when a transform that resizes the short side and
#: centre-crops (timm's and open_clip's evaluation transforms) sees it: a longer one is cut to its centre at this
#: ratio first (:func:`bounded_transform`)
MAX_ASPECT_RATIO = 32


def crop_to_aspect_ratio(img, max_ratio=MAX_ASPECT_RATIO):
    """The centre of ``img`` at most ``max_ratio`` times as long as its short side; ``img`` itself when it is.

    The same number of pixels is cut from both ends (one more pixel is kept when the counts' parity differs), so
    the centre stays where it was.
    """
    w, h = img.size
    if w > max_ratio * h:
        keep = max_ratio * h + (w - max_ratio * h) % 2
        left = (w - keep) // 2
        return img.crop((left, 0, left + keep, h))
    if h > max_ratio * w:
        keep = max_ratio * w + (h - max_ratio * w) % 2
        top = (h - keep) // 2
        return img.crop((0, top, w, top + keep))
    return img


class CentreCropFirst:
    """A transform applied to :func:`crop_to_aspect_ratio` of its image (a class, not a closure: DataLoader
    workers may need to pickle it)."""

    def __init__(self, transform, max_ratio=MAX_ASPECT_RATIO):
        self.transform, self.max_ratio = transform, max_ratio

    def __call__(self, img):
        return self.transform(crop_to_aspect_ratio(img, self.max_ratio))

    def __repr__(self):
        return f"CentreCropFirst(max_ratio={self.max_ratio}, {self.transform!r})"


#: how many times the short side a transform resizes to an image's decoded sides keep (:func:`decode_size`). At 1 a
#: JPEG decoded straight to that size skips the transform's smoothing resize, and its embedding moved about twice as
#: much as re-saving the file at quality 95 does (mean 0.041 against 0.018 of its norm, at most 0.086); at 2 about
#: as much (0.022, at most 0.030; ``benchmarks/bench_jpeg_decode.py``)
DECODE_MARGIN = 2


#: the version of how :func:`load_rgb` turns a file into pixels, raised whenever a release changes any file's pixels.
#: Each embeddings run records it (:func:`decoding_record`), so resuming or filling in a run refuses to add
#: embeddings of files read another way. 2: colour profiles converted to sRGB (:func:`to_srgb`) and large JPEGs
#: decoded reduced (:data:`DECODE_MARGIN`); runs of earlier releases have no record.
READER_VERSION = 2


def decoding_record(min_side):
    """How a run's files become the pixels it embeds: the reader's version and the ``min_side`` (:func:`decode_size`)
    a large JPEG is decoded to, None for full size. JSON-serialisable."""
    return {"reader": READER_VERSION, "jpeg_min_side": None if min_side is None else int(min_side)}


def decode_size(transform, margin=DECODE_MARGIN):
    """The size both sides of a decoded image should keep for ``transform``: ``margin`` times the short side its
    first step resizes to (or its longer side, for a fixed height and width), or None when it does not start with
    a resize (:func:`load_rgb` then decodes at full size). ``transform`` may be wrapped by :func:`bounded_transform`."""
    from torchvision.transforms import Resize

    steps = list(getattr(getattr(transform, "transform", transform), "transforms", None) or [])
    if not steps or not isinstance(steps[0], Resize):
        return None
    size = steps[0].size
    size = max(size) if isinstance(size, (list, tuple)) else size
    return int(margin * size) if isinstance(size, int) and size > 0 else None


def bounded_transform(transform, max_ratio=MAX_ASPECT_RATIO):
    """``transform`` made safe for very elongated images, where it resizes the short side and centre-crops.

    Such a transform first scales the whole image to the size its short side gets: a 4000 x 3 strip becomes
    341,333 x 256 pixels (350 MB) before the crop keeps 224 x 224 of it, a 100,000 x 1 strip 26 GB. The crop never
    keeps more than about the central square, so the image is cut to its centre at ``max_ratio`` first
    (:class:`CentreCropFirst`): images within the ratio are transformed exactly as before, longer ones within a
    few grey levels of it. Other transforms (a fixed size that squashes the whole image, no crop) are returned
    as they are.
    """
    from torchvision.transforms import CenterCrop, Resize

    steps = list(getattr(transform, "transforms", None) or [])
    if len(steps) < 2 or not isinstance(steps[0], Resize) or not isinstance(steps[1], CenterCrop):
        return transform
    size = steps[0].size
    if isinstance(size, (list, tuple)):
        if len(size) != 1:
            return transform  # (height, width): the whole image is squashed into it, nothing is cut away
        size = size[0]
    if steps[0].max_size is not None or max(steps[1].size) > 2 * size:
        return transform
    return CentreCropFirst(transform, max_ratio)


def crop_box(img, box, min_size=1, *, path=None):
    """Crop a FiftyOne relative ``[x, y, w, h]`` box (0..1) out of a PIL image.

    The box is clamped to the image and grown to at least ``min_size`` pixels
    per side so degenerate boxes (no area, a point inside the image) still give a (tiny) crop instead of failing;
    the extractor does not embed objects whose box covers no area of their image (:func:`empty_box_problem`) or
    less than one pixel of it in width or height (:func:`subpixel_box_problem`), it skips and lists them.
    A box that is not four finite numbers, has a negative width or height, or shares no point with the image
    (``x > 1``, ``x + w < 0``, likewise for y: clamping it would crop an edge pixel that is not the object) raises
    :class:`ImageLoadError` (naming the image ``path`` when given), so the object is skipped and listed.
    """
    W, H = img.size
    x, y, w, h = _box_numbers(box, path)
    _require_box_on_image(box, (x, y, w, h), path)
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


def _require_box_on_image(box, numbers, path):
    """Refuse a box of negative size, or one wholly outside the image (relative coordinates 0..1)."""
    x, y, w, h = numbers
    where = f" of an object in image {os.fspath(path)!r}" if path is not None else " of an object"
    if w < 0 or h < 0:
        raise ImageLoadError(f"bounding_box {list(box)!r}{where} has a negative width or height",
                             "fix the box ([x, y, w, h] in 0..1, w and h >= 0) or remove the object")
    if x > 1 or y > 1 or x + w < 0 or y + h < 0:
        raise ImageLoadError(f"bounding_box {list(box)!r}{where} lies outside the image (0..1 on both "
                             "axes)", "fix the box ([x, y, w, h] in 0..1) or remove the object")


def empty_box_problem(box):
    """Why the ``(path, box)`` object item ``box`` covers no area of its image, or None.

    A box of width or height 0, or one that only touches the image (``x == 1``, ``x + w == 0``, likewise for y),
    holds no pixel of the object: :func:`crop_box` would grow it to one pixel, whose embedding is a flat colour
    that scores like an object. Boxes that are not four finite numbers, of negative size or wholly outside the
    image are left to :func:`crop_box`, which names their own problem.
    """
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    if not np.isfinite([x, y, w, h]).all() or w < 0 or h < 0 or x > 1 or y > 1 or x + w < 0 or y + h < 0:
        return None  # malformed, or wholly outside the image: crop_box names it
    if w == 0 or h == 0:
        return "has no area (its width or height is 0)"
    if x == 1 or y == 1 or x + w == 0 or y + h == 0:
        return "covers no area of the image (it only touches its edge, 0..1 on both axes)"
    return None


#: a box's part inside its image must be at least this many pixels wide and high (less a rounding margin for boxes
#: converted from pixel coordinates) to be embedded: a thinner one is a one-pixel strip of flat colour once cropped
MIN_BOX_PIXELS = 1.0


def subpixel_box_problem(box, size):
    """Why the object box ``box`` covers less than one pixel of an image of ``size`` ``(width, height)`` in width
    or height, or None.

    Only the part of the box inside the image counts (a box partly outside is cropped to it). :func:`crop_box`
    would grow such a sliver to one pixel, whose embedding is a strip of flat colour that scores like an object,
    as a box without area (:func:`empty_box_problem`) would. Malformed boxes and boxes wholly outside the image are
    left to :func:`crop_box`, which names their own problem.
    """
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    if not np.isfinite([x, y, w, h]).all() or w < 0 or h < 0 or x > 1 or y > 1 or x + w < 0 or y + h < 0:
        return None
    width, height = size
    across = (min(x + w, 1.0) - max(x, 0.0)) * width
    down = (min(y + h, 1.0) - max(y, 0.0)) * height
    if across >= MIN_BOX_PIXELS - 1e-6 and down >= MIN_BOX_PIXELS - 1e-6:
        return None
    return (f"covers less than one pixel of its {width}x{height} image ({across:.3g} x {down:.3g} pixels inside "
            "it): its crop would be a strip of flat colour")
