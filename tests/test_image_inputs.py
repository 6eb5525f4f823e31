"""Images users actually have, through the public SDK: odd storage modes, odd shapes, odd paths.

Each test pins a bug found by feeding such files to ``compute_pyramid_embeddings`` / ``compute_clip_embeddings``
(real FiftyOne datasets, real files written with PIL, the real timm backbone, the tiny open_clip model of
conftest) and fails on the code before its fix; ``test_moderately_elongated_images_embed_as_before`` pins instead
that the fix for elongated images leaves ordinary ones alone.
"""

import numpy as np
import pytest
from PIL import Image

import ood_core as ood
from ood_core.images import ImageLoadError, load_rgb

# a strip this long (a 6 KB PNG of 2.2 M pixels, far below PIL's decompression-bomb limit) is 563 M pixels wide
# once its short side is resized to the backbone's 256: more than PIL can allocate for one image line, so it
# fails at once where a shorter strip (20,000 x 2: 2.6 GB, 10 s; 100,000 x 1: 26 GB) exhausts the machine
LONG_STRIP = (2_200_000, 1)
#: ood_core.images.MAX_ASPECT_RATIO: longer images are cut to their centre at this ratio before the transform
RATIO = 32


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """One 32 x 32 picture (random content, a black band along the top) stored in the ways users store it."""
    root = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    rgb = rng.integers(1, 256, (32, 32, 3), dtype=np.uint8)
    rgb[:6] = 0  # a black band: the transparent part of the picture in the files with transparency
    opaque = ~(rgb == 0).all(axis=2)
    paths = {}

    def save(name, img, **kw):
        paths[name] = str(root / name)
        img.save(paths[name], **kw)

    save("rgba.png", Image.fromarray(np.dstack([rgb, np.where(opaque, 255, 0).astype(np.uint8)]), "RGBA"))
    save("rgb_colour_key.png", Image.fromarray(rgb), transparency=(0, 0, 0))  # a PNG tRNS chunk
    gray = rgb[..., 0].copy()
    save("la.png", Image.fromarray(np.dstack([gray, np.where(opaque, 255, 0).astype(np.uint8)]), "LA"))
    save("l_colour_key.png", Image.fromarray(gray, "L"), transparency=0)
    depth = rng.normal(5.0, 1.0, (32, 32)).astype(np.float32)
    with_nodata = depth.copy()
    with_nodata[3, 4] = np.nan  # one pixel without a value (a depth map's "no data")
    save("depth_nodata.tif", Image.fromarray(with_nodata, "F"))
    filled = depth.copy()
    filled[3, 4] = depth.min()  # the nodata pixel shown as the darkest value
    save("depth_filled.tif", Image.fromarray(filled, "F"))
    (root / "folder.png").mkdir()
    paths["folder.png"] = str(root / "folder.png")
    strip = np.tile(rng.integers(0, 256, (1, 4096, 3), dtype=np.uint8), (1, LONG_STRIP[0] // 4096 + 1, 1))
    save("strip.png", Image.fromarray(np.ascontiguousarray(strip[:, :LONG_STRIP[0]])))
    return paths


def _embed(ds, **kw):
    """Embeddings of a view by filepath, without writing a field."""
    out = ood.compute_pyramid_embeddings(ds, None, progress=False, num_workers=0, **kw)
    by_id = dict(zip(out["keys"], out["embeddings"]))
    return {s.filepath: by_id.get(s.id) for s in ds.select_fields()}, out


# --------------------------------------------------------------------------- transparency


def test_colour_key_transparency_is_composited_like_an_alpha_channel(pictures, dataset_factory, session_extractor):
    """A PNG whose transparency is a colour key (tRNS chunk: RGB or grayscale) shows its transparent pixels as the
    RGBA file of the same picture does: on white. Before, the key was dropped and they were embedded black."""
    names = ["rgba.png", "rgb_colour_key.png", "la.png", "l_colour_key.png"]
    ds = dataset_factory([pictures[n] for n in names])
    emb, _ = _embed(ds)
    rgba, key = np.asarray(load_rgb(pictures["rgba.png"])), np.asarray(load_rgb(pictures["rgb_colour_key.png"]))
    assert (rgba[:6] == 255).all()
    np.testing.assert_array_equal(key, rgba)
    np.testing.assert_array_equal(load_rgb(pictures["l_colour_key.png"]), load_rgb(pictures["la.png"]))
    np.testing.assert_array_equal(emb[pictures["rgb_colour_key.png"]], emb[pictures["rgba.png"]])
    np.testing.assert_array_equal(emb[pictures["l_colour_key.png"]], emb[pictures["la.png"]])


def test_sixteen_bit_colour_key_is_white_and_outside_the_range(tmp_path):
    """A 16-bit grayscale PNG with a transparent colour key (tRNS) shows its keyed pixels on white like an 8-bit
    one, and the key's value does not stretch the range of the visible pixels. Before, the key was ignored: the
    keyed band kept its raw value (here the darkest) and set the bottom of the range."""
    visible = np.arange(1000, 1000 + 26 * 32, dtype=np.uint16).reshape(26, 32)
    raw = np.vstack([np.zeros((6, 32), np.uint16), visible])
    Image.fromarray(raw).save(tmp_path / "keyed16.png", transparency=0)
    Image.fromarray(visible).save(tmp_path / "visible16.png")
    with Image.open(tmp_path / "keyed16.png") as img:
        assert img.mode.startswith("I") and img.info.get("transparency") == 0
    keyed = np.asarray(load_rgb(str(tmp_path / "keyed16.png")))
    assert (keyed[:6] == 255).all()
    np.testing.assert_array_equal(keyed[6:], np.asarray(load_rgb(str(tmp_path / "visible16.png"))))


def test_clip_encoder_converts_pil_images_as_it_converts_files(pictures, tiny_clip, one_torch_thread):
    """``CLIPEncoder.encode_images`` takes PIL images or paths; a picture must embed the same either way. Before,
    a PIL image was converted with ``convert("RGB")``: transparency turned black (files: white) and a 16-bit
    image was clipped to white (files: stretched by its own range)."""
    from ood_core.clip.encoder import CLIPEncoder

    encoder = CLIPEncoder(tiny_clip.name, pretrained=str(tiny_clip.safetensors))
    sixteen = Image.fromarray((np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 50 + 1000))
    assert sixteen.mode.startswith("I")
    sixteen_path = pictures["rgba.png"].replace("rgba.png", "sixteen.png")
    sixteen.save(sixteen_path)
    paths = [pictures["rgba.png"], pictures["la.png"], sixteen_path]
    with Image.open(paths[0]) as a, Image.open(paths[1]) as b:
        images = [a.copy(), b.copy(), sixteen]
    assert [im.mode for im in images][:2] == ["RGBA", "LA"]
    np.testing.assert_allclose(encoder.encode_images(images), encoder.encode_images(paths), atol=1e-6)


# --------------------------------------------------------------------------- float images


def test_one_nodata_pixel_does_not_blacken_a_float_image(pictures, dataset_factory, session_extractor):
    """A float ("F") TIFF with one NaN pixel is stretched by the range of its values, the NaN shown as the darkest
    value. Before, the NaN made the range NaN and every pixel black (with a numpy RuntimeWarning)."""
    nodata, filled = pictures["depth_nodata.tif"], pictures["depth_filled.tif"]
    pixels = np.asarray(load_rgb(nodata))
    assert pixels.max() == 255 and pixels.min() == 0
    np.testing.assert_array_equal(pixels, np.asarray(load_rgb(filled)))
    emb, out = _embed(dataset_factory([nodata, filled]))
    assert out["num_failed"] == 0
    np.testing.assert_array_equal(emb[nodata], emb[filled])


# --------------------------------------------------------------------------- paths


def test_a_folder_as_filepath_is_named_a_folder_not_a_missing_file(pictures, dataset_factory, session_extractor):
    """A sample whose filepath is a folder: skipped with an error that says so (before: "does not exist", which
    sends the user looking for a file that is there), and named when it stops the run."""
    folder = pictures["folder.png"]
    ds = dataset_factory([pictures["rgba.png"], folder])
    _, out = _embed(ds)
    [failure] = out["failures"]
    assert failure["item"] == folder and failure["id"] == ds.match({"filepath": folder}).first().id
    assert "is a folder, not an image file" in failure["error"] and "does not exist" not in failure["error"]
    with pytest.raises(ImageLoadError, match=r"folder\.png' is a folder, not an image file.*filepath"):
        _embed(ds, skip_failures=False)


def test_an_empty_file_is_named_empty(pictures, dataset_factory, session_extractor, tmp_path):
    """A zero-byte file (an interrupted copy or download) is reported as empty, with the fix; before, PIL's
    "cannot identify image file" and the advice to re-export it."""
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    ds = dataset_factory([pictures["rgba.png"], str(empty)])
    _, out = _embed(ds)
    [failure] = out["failures"]
    assert failure["item"] == str(empty)
    assert failure["error"].endswith("is empty (0 bytes); copy or download it again (an interrupted transfer?)")
    with pytest.raises(ImageLoadError, match=r"empty\.jpg' is empty \(0 bytes\).*skip_failures=True"):
        _embed(ds, skip_failures=False)


# --------------------------------------------------------------------------- elongated images


def _strip_middle(path, ratio=RATIO):
    """The centre of the strip at ``ratio`` times its height: all that a centre crop of its resized short side
    can show."""
    with Image.open(path) as img:
        w, h = img.size
        keep = ratio * h + (w - ratio * h) % 2
        left = (w - keep) // 2
        return img.crop((left, 0, left + keep, h))


def test_a_long_thin_strip_is_embedded_not_blown_up(pictures, dataset_factory, session_extractor, tmp_path):
    """Resize-the-short-side-then-centre-crop (timm's evaluation transform) first made the whole strip 256 pixels
    high: 341,333 x 256 for a 4000 x 3 image (350 MB, 1 s), 26 GB for 100,000 x 1. The strip now goes to the
    centre crop directly; before, this one failed with a bare MemoryError (and a shorter one exhausted memory)."""
    middle = str(tmp_path / "middle.png")
    _strip_middle(pictures["strip.png"]).save(middle)
    ds = dataset_factory([pictures["strip.png"], middle])
    emb, out = _embed(ds, skip_failures=False)
    assert out["num_failed"] == 0
    np.testing.assert_allclose(emb[pictures["strip.png"]], emb[middle], rtol=1e-5, atol=1e-6)


def test_moderately_elongated_images_embed_as_before(extractor, tmp_path):
    """Images up to MAX_ASPECT_RATIO (32) times longer than wide are transformed exactly as before; longer ones
    (where the old transform's intermediate image grows with the length) differ from it by a few grey levels."""
    import timm

    from ood_core.images import MAX_ASPECT_RATIO

    assert MAX_ASPECT_RATIO == RATIO
    plain = timm.data.create_transform(**extractor.data_config, is_training=False)
    rng = np.random.default_rng(1)
    for size in [(1280, 40), (40, 1280), (1281, 40), (40, 1800), (300, 2), (2, 299), (224, 224), (300, 20)]:
        img = Image.fromarray(rng.integers(0, 256, size[::-1] + (3,), dtype=np.uint8))
        old, new = plain(img), extractor.transform(img)
        if max(size) <= RATIO * min(size):
            assert (old == new).all(), size
        else:
            assert float((old - new).abs().max()) <= 4 / 255 * 2, size  # normalised by std 0.5: 4 grey levels


def test_a_long_thin_strip_gets_a_clip_embedding(pictures, dataset_factory, tiny_clip, one_torch_thread, tmp_path):
    """The CLIP preprocessing resizes the short side and centre-crops too. Before, a strip failed outside the
    per-image error handling: a bare MemoryError stopped compute_clip_embeddings even with skip_failures=True."""
    strip = str(tmp_path / "clip_strip.png")
    Image.new("RGB", (17_000_000, 1), (200, 30, 30)).save(strip)  # 32 px high once resized: 544 M pixels wide
    middle = str(tmp_path / "clip_middle.png")
    _strip_middle(strip).save(middle)
    ds = dataset_factory([strip, middle])
    out = ood.compute_clip_embeddings(ds, "clip", model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors),
                                      progress=False)
    assert out["num_embedded"] == 2 and out["num_failed"] == 0
    got = dict(zip(ds.values("filepath"), ds.values("clip")))
    np.testing.assert_allclose(got[strip], got[middle], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- naming the item that stops a run


def test_an_unreadable_image_that_stops_the_run_is_named_by_its_sample(pictures, dataset_factory, session_extractor,
                                                                        tmp_path):
    """skip_failures=False stops at the first unreadable image; the error names its sample id (what a user looks
    up in FiftyOne) besides the file. Before, it gave "(item N)", N counting only the images still to compute: on
    a resumed run not even the sample's position in the view."""
    good = pictures["rgba.png"]
    truncated = str(tmp_path / "truncated.png")
    with open(good, "rb") as f:
        open(truncated, "wb").write(f.read()[:60])
    ds = dataset_factory([good, good, truncated])
    bad_id = ds.match({"filepath": truncated}).first().id
    ood.compute_pyramid_embeddings(ds, "emb", progress=False, num_workers=0)  # skips it: the next call retries it
    for field in ("emb", None):
        with pytest.raises(ImageLoadError, match=rf"truncated\.png.*\(sample {bad_id}\); pass skip_failures=True"):
            ood.compute_pyramid_embeddings(ds, field, skip_failures=False, progress=False, num_workers=0)


def test_an_unusable_box_that_stops_the_run_names_the_object(pictures, dataset_factory, session_extractor):
    """The same for object crops: the error names the object and its sample (an empty box does not tell which of
    the image's objects it is)."""
    import fiftyone as fo

    ds = dataset_factory([pictures["rgba.png"]])
    sample = ds.first()
    sample["objects"] = fo.Detections(detections=[fo.Detection(label="a", bounding_box=[0.1, 0.1, 0.5, 0.5]),
                                                  fo.Detection(label="b")])
    sample.save()
    bad = sample.objects.detections[1].id
    with pytest.raises(ImageLoadError, match=rf"bounding_box \[\].*\(object {bad} of sample {sample.id}\)"):
        ood.compute_pyramid_embeddings(ds, "patch_emb", patches_field="objects", skip_failures=False,
                                       progress=False, num_workers=0)
