"""Large JPEGs are decoded no larger than the backbone needs, whole images only.

A phone photo (12 megapixels) took about 0.2 s to decode at full size, for a backbone that looks at 224 x 224 of
it: decoding, not the network, set the pace of embedding a photo collection. ``load_rgb(path, decode_size)``
decodes such a JPEG at 1/2-1/8 scale (libjpeg's scaled decoding), keeping both sides at least twice the short side
the transform resizes to. Real ImageNet photos (foolbox's samples) scaled up stand in for large photos.
"""

import numpy as np
import pytest
from PIL import Image

import ood_core as ood
from ood_core.images import crop_box, decode_size, load_rgb
from icc_helpers import rgb_profile
from photo_helpers import foolbox_imagenet


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory):
    """A real photo scaled up to 1,792 x 1,792 px and saved as a JPEG, and the same at its own 224 px."""
    photo = Image.open(foolbox_imagenet()[0][3]).convert("RGB")
    root = tmp_path_factory.mktemp("jpeg")
    large, small = str(root / "large.jpg"), str(root / "small.jpg")
    photo.resize((1792, 1792), Image.BICUBIC).save(large, quality=90)
    photo.save(small, quality=90)
    return large, small


def test_decode_size_is_twice_the_short_side_the_transform_resizes_to(extractor):
    """The default backbone's transform resizes the short side to 256 (224 / crop 0.875): 512."""
    assert decode_size(extractor.transform) == 2 * 256
    assert decode_size(object()) is None  # no resize step known: full size


def test_a_large_jpeg_embeds_from_the_reduced_decode_and_close_to_the_full_one(large_jpeg, dataset_factory,
                                                                               session_extractor):
    """Through the SDK the large file is decoded at 1/2 scale (896 px: 1/4 would be 448, below 512), and its
    embedding is the reduced decode's, within 5% of the full decode's (what re-saving a JPEG changes: 1-3%)."""
    large, _ = large_jpeg
    size = decode_size(session_extractor.transform)
    reduced, full = load_rgb(large, size), load_rgb(large)
    assert full.size == (1792, 1792) and reduced.size == (896, 896)
    ds = dataset_factory([large])
    out = ood.compute_pyramid_embeddings(ds, None, progress=False, num_workers=0)
    got = np.asarray(out["embeddings"][0])
    np.testing.assert_allclose(got, session_extractor.embed_images([reduced])[0], rtol=1e-5, atol=1e-6)
    e_full = session_extractor.embed_images([full])[0]
    change = np.linalg.norm(got - e_full) / np.linalg.norm(e_full)
    assert 0 < change < 0.05


def test_object_boxes_are_cut_from_the_full_size_image(large_jpeg, session_extractor):
    """An object's crop needs every pixel of its box: patches of a large JPEG come from the full decode."""
    large, _ = large_jpeg
    box = [0.3, 0.25, 0.2, 0.3]
    run = session_extractor.extract([(large, box)], progress=False)
    expected = session_extractor.embed_images([crop_box(load_rgb(large), box)])
    np.testing.assert_allclose(run.embeddings, expected, rtol=1e-5, atol=1e-6)


def test_a_jpeg_not_twice_the_needed_size_is_decoded_whole(large_jpeg, session_extractor):
    """224 px (and anything below 1,024 px on a side for this backbone) is decoded exactly as before."""
    _, small = large_jpeg
    with Image.open(small) as img:
        img.load()
        whole = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(load_rgb(small, decode_size(session_extractor.transform))), whole)


def test_clip_reads_a_large_jpeg_file_reduced_as_the_extractor_does(large_jpeg, dataset_factory, tiny_clip):
    """CLIP embeddings of a file (the SDK's, and ``encode_images`` given its path) come from the reduced decode;
    a PIL image passed in is embedded as given. The tiny test model resizes to 32 px: decode_size 64, so the
    1,792 px file is decoded at 1/8 scale (224 px)."""
    from ood_core.clip.encoder import CLIPEncoder

    large, _ = large_jpeg
    encoder = CLIPEncoder(tiny_clip.name, pretrained=str(tiny_clip.safetensors))
    assert encoder.decode_size == 2 * 32
    reduced, full = encoder.load_image(large), load_rgb(large)
    assert reduced.size == (224, 224) and np.array_equal(np.asarray(reduced), np.asarray(load_rgb(large, 64)))
    from_reduced, from_full = encoder.encode_images([reduced]), encoder.encode_images([full])
    assert not np.allclose(from_reduced, from_full, atol=1e-4)  # the two decodes are told apart
    np.testing.assert_allclose(encoder.encode_images([large]), from_reduced, atol=1e-6)
    ds = dataset_factory([large])
    ood.compute_clip_embeddings(ds, "clip", model_name=tiny_clip.name, pretrained=str(tiny_clip.safetensors),
                                progress=False)
    np.testing.assert_allclose(ds.values("clip")[0], from_reduced[0], atol=1e-6)
    assert ood.get_ood_run_info(ds, "clip")["decoding"]["jpeg_min_side"] == 64


def test_a_large_jpeg_decoded_reduced_is_still_read_through_its_colour_profile(tmp_path):
    """The scaled decode keeps the embedded profile: a Display P3 file is converted to sRGB at reduced scale as at
    full size (16 x 16 blocks of 128 px random colours: each block's colour is known at both scales)."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    path = str(tmp_path / "p3.jpg")
    Image.fromarray(np.kron(blocks, np.ones((128, 128, 1), np.uint8))).save(path, quality=95,
                                                                            icc_profile=rgb_profile("Display P3"))
    full, reduced = load_rgb(path), load_rgb(path, 256)
    assert full.size == (2048, 2048) and reduced.size == (256, 256)
    with Image.open(path) as img:
        raw = img.convert("RGB").resize((256, 256), Image.BOX)
    shrunk = np.asarray(full.resize((256, 256), Image.BOX), dtype=float)

    def centres(a):  # the centre pixel of each block at 1/8 scale (16 px), away from its edges
        return np.asarray(a, dtype=float)[8::16, 8::16]

    assert np.abs(centres(reduced) - centres(shrunk)).mean() < 1.5  # the same colours as the full conversion
    assert np.abs(centres(raw) - centres(shrunk)).mean() > 5  # which differ from the file's raw numbers
