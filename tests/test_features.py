"""Pyramid extraction: level choice, both modes, batching, odd image formats, failures."""

import numpy as np
import pytest
import torch
from PIL import Image

from ood_core.errors import OODInputError
from ood_core.features import PyramidExtractor, combine_levels, resolve_levels
from ood_core.images import ImageLoadError, crop_box, load_rgb, to_rgb

RESNET_LEVELS = ["act1", "layer1", "layer2", "layer3", "layer4"]


def test_resolve_levels_by_index_name_alias_and_negative():
    assert resolve_levels(RESNET_LEVELS, ["conv1", "layer1", "layer2"]) == [0, 1, 2]
    assert resolve_levels(RESNET_LEVELS, [4, "layer1", -1]) == [1, 4]
    assert resolve_levels(RESNET_LEVELS, None) == [0, 1, 2, 3, 4]
    with pytest.raises(OODInputError, match="layer9"):
        resolve_levels(RESNET_LEVELS, ["layer9"])
    with pytest.raises(OODInputError, match="out of range"):
        resolve_levels(RESNET_LEVELS, [5])
    with pytest.raises(OODInputError, match="empty"):
        resolve_levels(RESNET_LEVELS, [])


def test_combine_levels_pool_and_flatten_match_hand_computation():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 8, 8, generator=g)
    b = torch.rand(2, 5, 4, 4, generator=g)
    pooled = combine_levels([a, b], "pool", 1).numpy()
    expected = np.concatenate([a.mean((2, 3)).numpy(), b.mean((2, 3)).numpy()], 1)
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)

    grid2 = combine_levels([a, b], "pool", 2).numpy()
    assert grid2.shape == (2, (3 + 5) * 4)
    # top-left cell of level a = mean of its top-left 4x4 quadrant
    np.testing.assert_allclose(grid2[:, 0], a[:, 0, :4, :4].mean((1, 2)).numpy(), rtol=1e-6)

    flat = combine_levels([a, b], "flatten").numpy()
    assert flat.shape == (2, (3 + 5) * 4 * 4)
    # the shallower map is area-averaged 2x2 -> 1 to the deeper map's 4x4 grid
    a_down = a.reshape(2, 3, 4, 2, 4, 2).mean((3, 5))
    np.testing.assert_allclose(flat, torch.cat([a_down, b], 1).flatten(1).numpy(), rtol=1e-6)
    with pytest.raises(OODInputError, match="mode"):
        combine_levels([a], "concat")


def test_paper_mode_resnet50_dimension():
    ext = PyramidExtractor("resnet50", levels=["conv1", "layer1", "layer2"], mode="flatten", weights="random")
    # (64 + 256 + 512) channels at 28x28 for 224 px inputs: the paper's 652k floats
    assert ext.dim == (64 + 256 + 512) * 28 * 28
    assert ext.level_names == ["act1", "layer1", "layer2"]
    emb = ext.embed_images([Image.new("RGB", (40, 30), (10, 200, 30))])
    assert emb.shape == (1, ext.dim)


def test_extract_matches_direct_forward_and_is_batch_independent(extractor, fashion_files):
    paths, _ = fashion_files
    paths = paths[:10]
    r1 = extractor.extract(paths, batch_size=3, progress=False)
    r2 = extractor.extract(paths, batch_size=10, progress=False)
    assert r1.embeddings.shape == (10, extractor.dim)
    assert extractor.dim == sum(extractor.channels)  # pool grid 1
    np.testing.assert_allclose(r1.embeddings, r2.embeddings, rtol=1e-4, atol=1e-5)
    # independent path: the timm transform + model outputs pooled by hand
    x = torch.stack([extractor.transform(load_rgb(p)) for p in paths[:2]])
    with torch.inference_mode():
        feats = extractor.model(x)
    hand = torch.cat([f.mean((2, 3)) for f in feats], 1).numpy()
    np.testing.assert_allclose(r1.embeddings[:2], hand, rtol=1e-4, atol=1e-5)
    assert list(r1.ok_indices) == list(range(10)) and r1.failures == []


def test_image_modes_normalise_to_rgb(tmp_path):
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    img16 = Image.fromarray(gray.astype(np.uint16) * 257)
    assert img16.mode.startswith("I")
    img16.save(tmp_path / "gray16.png")
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 16:, 3] = 255  # left half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gray, "L").convert("P").save(tmp_path / "pal.png")

    g8 = np.asarray(load_rgb(str(tmp_path / "gray.png")))
    g16 = np.asarray(load_rgb(str(tmp_path / "gray16.png")))
    assert g8.shape == g16.shape == (32, 32, 3)
    # 16-bit is stretched by its own min..max (not clipped to white, not left dark)
    stretched = (gray.astype(float) - gray.min()) * 255.0 / (gray.max() - gray.min())
    assert np.abs(g16[..., 0].astype(float) - stretched).max() <= 1.0
    assert (g8[..., 0] == gray).all()
    rgb = np.asarray(load_rgb(str(tmp_path / "rgba.png")))
    assert (rgb[:, :16] == 255).all()  # transparent -> white background
    assert (rgb[:, 16:] == [255, 0, 0]).all()
    assert load_rgb(str(tmp_path / "pal.png")).mode == "RGB"
    assert to_rgb(Image.new("CMYK", (4, 4))).mode == "RGB"


def test_unreadable_images_raise_or_are_skipped(extractor, fashion_files, tmp_path):
    paths, _ = fashion_files
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(open(paths[0], "rb").read()[:40])  # truncated PNG
    missing = str(tmp_path / "missing.jpg")
    items = [paths[0], str(corrupt), paths[1], missing, paths[2]]
    with pytest.raises(ImageLoadError, match="corrupt.png"):
        extractor.extract(items, batch_size=2, progress=False)
    res = extractor.extract(items, batch_size=2, skip_failures=True, progress=False)
    assert list(res.ok_indices) == [0, 2, 4]
    assert [i for i, _ in res.failures] == [1, 3]
    assert "missing.jpg" in res.failures[1][1]
    clean = extractor.extract([paths[0], paths[1], paths[2]], progress=False)
    np.testing.assert_allclose(res.embeddings, clean.embeddings, rtol=1e-4, atol=1e-5)


def test_object_crops_are_embedded(extractor, fashion_files):
    paths, _ = fashion_files
    img = load_rgb(paths[0])
    crop = crop_box(img, [0.25, 0.25, 0.5, 0.5])
    assert crop.size == (14, 14)
    assert crop_box(img, [0.99, 0.99, 0.0, 0.0]).size[0] >= 1  # degenerate box still crops
    res = extractor.extract([(paths[0], [0.25, 0.25, 0.5, 0.5]), paths[0]], progress=False)
    direct = extractor.embed_images([crop, img])
    np.testing.assert_allclose(res.embeddings, direct, rtol=1e-4, atol=1e-5)
    assert not np.allclose(res.embeddings[0], res.embeddings[1])


def test_progress_callback_and_empty_input(extractor, fashion_files):
    paths, _ = fashion_files
    seen = []
    extractor.extract(paths[:5], batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
    with pytest.raises(OODInputError, match="empty"):
        extractor.extract([], progress=False)


def test_bad_mode_and_grid():
    with pytest.raises(OODInputError, match="mode"):
        PyramidExtractor("resnet18", mode="stack", weights="random")
    with pytest.raises(OODInputError, match="grid"):
        PyramidExtractor("resnet18", mode="pool", grid=0, weights="random")


def _sideways_jpeg(tmp_path):
    """A JPEG stored 48 wide x 32 high whose EXIF says "rotate 90 clockwise to show" (6),
    the same JPEG without EXIF, and the upright pixels (an independent np.rot90)."""
    rng = np.random.default_rng(0)
    arr = np.zeros((32, 48, 3), np.uint8)
    arr[:, :16] = [255, 0, 0]  # the left third is red: after rotation it is the top third
    arr[:, 16:] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    tagged, plain = tmp_path / "sideways.jpg", tmp_path / "plain.jpg"
    Image.fromarray(arr).save(tagged, quality=95, exif=exif)
    Image.fromarray(arr).save(plain, quality=95)
    upright = np.rot90(np.asarray(Image.open(plain).convert("RGB")), k=-1)  # clockwise
    return str(tagged), upright


def test_exif_orientation_is_applied_before_embedding(extractor, tmp_path):
    tagged, upright = _sideways_jpeg(tmp_path)
    img = load_rgb(tagged)
    assert img.size == (32, 48)  # (width, height): shown upright, as the App shows it
    np.testing.assert_array_equal(np.asarray(img), upright)
    pre_rotated = str(tmp_path / "upright.png")
    Image.fromarray(upright).save(pre_rotated)
    box = [0.0, 0.0, 1.0, 0.3]  # the top of the shown image: red only when upright
    got = extractor.extract([tagged, (tagged, box)], progress=False)
    want = extractor.extract([pre_rotated, (pre_rotated, box)], progress=False)
    np.testing.assert_allclose(got.embeddings, want.embeddings, rtol=1e-5, atol=1e-6)


def _bomb(tmp_path, monkeypatch, side=350):
    """A real PNG above 2x a lowered decompression-bomb limit (PIL refuses to decode it)."""
    # PIL checks every image it makes, so the limit stays above the 224x224 model input.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60_000)
    path = tmp_path / "bomb.png"
    Image.new("RGB", (side, side), (0, 128, 0)).save(path)
    return str(path)


def test_decompression_bombs_raise_or_are_skipped(extractor, fashion_files, tmp_path, monkeypatch):
    paths, _ = fashion_files
    bomb = _bomb(tmp_path, monkeypatch)
    items = [paths[0], bomb, paths[1]]
    with pytest.raises(ImageLoadError, match=r"bomb\.png.*decompression bomb.*MAX_IMAGE_PIXELS"):
        extractor.extract(items, progress=False)
    res = extractor.extract(items, skip_failures=True, progress=False)
    assert list(res.ok_indices) == [0, 2] and [i for i, _ in res.failures] == [1]


def test_decompression_bomb_warning_as_error_is_an_image_load_error(tmp_path, monkeypatch):
    import warnings

    between = _bomb(tmp_path, monkeypatch, side=300)  # 90,000 px: between 1x and 2x the limit
    with pytest.warns(Image.DecompressionBombWarning):
        assert load_rgb(between).size == (300, 300)  # PIL's default: a warning only
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageLoadError, match="bomb.png"):
            load_rgb(between)
