"""Photos with an embedded ICC colour profile are embedded in the colours the App shows them in.

Phones store Display P3 photos and cameras Adobe RGB ones: the raw numbers of a wide-gamut file, read as sRGB, are
washed out (12 of 255 levels off on average), while browsers and the FiftyOne App convert them to the screen's
colours. Before, the extractor, the CLIP encoder and the report read the raw numbers. The profiles are written by
hand (``tests/icc_helpers.py``: no profile file is installed here) and the expected colours come from the
published primaries and tone curves, computed independently of LittleCMS.
"""

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageCms

import ood_core as ood
from ood_core.images import load_rgb, to_rgb, to_srgb
from icc_helpers import (
    cmyk_profile, cmyk_to_linear_srgb, encode_srgb, rgb_profile, rgb_to_srgb, srgb_to_rgb,
)
from photo_helpers import foolbox_imagenet

WIDE = ["Display P3", "Adobe RGB (1998)"]


def _pixels(seed=0, shape=(48, 48)):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _expected(pixels, space):
    return rgb_to_srgb(pixels.reshape(-1, 3), space).reshape(pixels.shape)


@pytest.mark.parametrize("space", WIDE)
@pytest.mark.parametrize("ext", ["png", "tif"])
def test_a_wide_gamut_file_is_read_in_the_colours_a_browser_shows(space, ext, tmp_path):
    """Within one level of the hand-computed sRGB colours; the raw numbers are far from them."""
    px = _pixels()
    path = str(tmp_path / f"wide.{ext}")
    Image.fromarray(px).save(path, icc_profile=rgb_profile(space))
    got = np.asarray(load_rgb(path)).astype(np.int64)
    want = _expected(px, space)
    assert np.abs(got - want).max() <= 1
    assert np.abs(px.astype(np.int64) - want).mean() > 5  # ignoring the profile would fail the line above


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_a_cmyk_file_is_read_through_its_press_profile(ext, tmp_path):
    """A CMYK file with its press profile (a hand-built ink model: off-white paper, inks of their own strength)
    comes out in the model's colours within one level, near black too (LittleCMS's precalculated table of the
    transform was up to 10 levels off there, where sRGB's levels are finest); Pillow's ink formula without the
    profile (white paper, pure inks) is on average about 100 levels off."""
    cmyk = np.random.default_rng(4).integers(0, 256, (48, 48, 4), dtype=np.uint8)
    path = str(tmp_path / f"press.{ext}")
    Image.fromarray(cmyk, "CMYK").save(path, icc_profile=cmyk_profile(), **({"quality": 100} if ext == "jpg" else {}))
    got = np.asarray(load_rgb(path)).astype(np.int64)
    with Image.open(path) as img:
        assert img.mode == "CMYK"
        cmyk = np.asarray(img)  # the inks as stored (a JPEG changes some by a level)
    linear = cmyk_to_linear_srgb(cmyk.reshape(-1, 4)).reshape(got.shape)
    want = np.round(encode_srgb(linear) * 255).astype(np.int64)
    assert np.abs(got - want).max() <= 1
    naive = np.asarray(Image.fromarray(cmyk, "CMYK").convert("RGB")).astype(np.int64)
    assert np.abs(naive - want).mean() > 50


def test_profiles_that_change_no_colour_leave_the_pixels_exactly_as_they_were(tmp_path):
    """sRGB profiles (Pillow's own, or a camera's copy under another name), a damaged profile, and one of another
    colour space (Lab, or an RGB profile on CMYK pixels) give the pixels of the untagged file."""
    px = _pixels(1)
    plain = np.asarray(to_rgb(Image.fromarray(px)))
    profiles = {
        "pillow srgb": ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        "camera srgb": rgb_profile("sRGB", description="Camera RGB"),
        "damaged": rgb_profile("Display P3")[:200],
        "not a profile": b"not an icc profile",
        "lab": ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(),
    }
    for name, icc in profiles.items():
        path = str(tmp_path / f"{name.replace(' ', '_')}.png")
        Image.fromarray(px).save(path, icc_profile=icc)
        np.testing.assert_array_equal(np.asarray(load_rgb(path)), plain, err_msg=name)
        with Image.open(path) as img:
            img.load()
            assert to_srgb(img) is img, name  # not even converted: no cost on the many sRGB-tagged photos
    odd = Image.fromarray(px)
    odd.info["icc_profile"] = "not bytes"  # a PIL image built by hand with a text where the profile goes
    np.testing.assert_array_equal(np.asarray(to_rgb(odd)), plain)
    cmyk = Image.fromarray(px).convert("CMYK")
    tagged = cmyk.copy()
    tagged.info["icc_profile"] = rgb_profile("Display P3")
    np.testing.assert_array_equal(np.asarray(to_rgb(tagged)), np.asarray(to_rgb(cmyk)))


def test_alpha_palette_and_a_second_conversion(tmp_path):
    """An RGBA image keeps its alpha (then goes on white as before); a palette image's colours are converted too;
    the result carries no profile, so converting it again changes nothing."""
    px = _pixels(2)
    alpha = np.where(np.arange(48)[:, None] < 8, 0, 255).astype(np.uint8).repeat(48, axis=1)
    rgba = Image.fromarray(np.dstack([px, alpha]), "RGBA")
    rgba.info["icc_profile"] = rgb_profile("Display P3")
    managed = to_srgb(rgba)
    assert managed.mode == "RGBA" and "icc_profile" not in managed.info
    np.testing.assert_array_equal(np.asarray(managed)[..., 3], alpha)
    out = np.asarray(to_rgb(rgba)).astype(np.int64)
    assert (out[:8] == 255).all()  # transparent rows on white
    assert np.abs(out[8:] - _expected(px, "Display P3")[8:]).max() <= 1
    np.testing.assert_array_equal(np.asarray(to_rgb(managed)), np.asarray(to_rgb(rgba)))

    palette = Image.fromarray(px).quantize(64)
    path = str(tmp_path / "palette.png")
    palette.save(path, icc_profile=rgb_profile("Adobe RGB (1998)"))
    shown = np.asarray(palette.convert("RGB"))
    assert np.abs(np.asarray(load_rgb(path)).astype(np.int64) - _expected(shown, "Adobe RGB (1998)")).max() <= 1


def test_a_display_p3_copy_of_a_photo_embeds_like_the_photo(dataset_factory, session_extractor, tmp_path):
    """Real photos stored again as Display P3 (the same colours on screen, other numbers in the file): through the
    SDK each copy's embedding is far closer to its photo's than the raw numbers' embedding is."""
    rows = []
    for i, f in enumerate(foolbox_imagenet()[0][:8]):
        px = np.asarray(Image.open(f).convert("RGB"))
        p3 = srgb_to_rgb(px.reshape(-1, 3), "Display P3").reshape(px.shape)
        paths = [str(tmp_path / f"{i}_{kind}.png") for kind in ("srgb", "p3", "raw")]
        Image.fromarray(px).save(paths[0])
        Image.fromarray(p3).save(paths[1], icc_profile=rgb_profile("Display P3"))
        Image.fromarray(p3).save(paths[2])  # what the product saw before: the P3 numbers without their profile
        rows.append(paths)
    ds = dataset_factory([p for row in rows for p in row])
    out = ood.compute_pyramid_embeddings(ds, None, progress=False, num_workers=0)
    emb = dict(zip(out["keys"], out["embeddings"]))
    by_path = {s.filepath: emb[s.id] for s in ds.select_fields()}
    managed = np.array([np.linalg.norm(by_path[p3] - by_path[srgb]) for srgb, p3, _ in rows])
    raw = np.array([np.linalg.norm(by_path[r] - by_path[srgb]) for srgb, _, r in rows])
    assert (managed < raw).all()
    assert managed.mean() < 0.5 * raw.mean()


def test_the_report_thumbnail_shows_the_converted_colours(tmp_path):
    """The HTML report's tile of a Display P3 image (a lossless PNG: a small image scaled up) has its sRGB colours,
    as the App shows the image."""
    from ood_core.report import thumbnail

    px = np.repeat(np.repeat(_pixels(3, (4, 4)), 16, axis=0), 16, axis=1)  # 64 px of 16 px blocks
    path = str(tmp_path / "p3.png")
    Image.fromarray(px).save(path, icc_profile=rgb_profile("Display P3"))
    uri, why = thumbnail(path)
    assert why is None and uri.startswith("data:image/png;base64,")
    tile = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))
    assert tile.shape == (128, 128, 3)
    got = tile[::32, ::32].astype(np.int64)  # one pixel per block
    want = _expected(px[::16, ::16], "Display P3")
    assert np.abs(got - want).max() <= 1
