"""CLIPEncoder on a tiny randomly initialised open_clip model saved to local files."""

import numpy as np
import open_clip
import pytest
import torch

from ood_core.clip.encoder import CLIPEncoder
from ood_core.errors import OODInputError, UnsafeCheckpointError, WeightsNotFoundError

TINY = "ood-test-tiny-clip"  # the default name of conftest's tiny_clip_factory


@pytest.fixture(scope="module")
def tiny(tiny_clip):
    """A tiny random open_clip model (conftest) and its .safetensors / .pt files."""
    assert tiny_clip.name == TINY
    return tiny_clip.model, tiny_clip.safetensors, tiny_clip.pt


def _images(n, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    # Different sizes and modes: preprocessing must resize and convert.
    out = []
    for i in range(n):
        arr = rng.integers(0, 256, size=(30 + 7 * i, 45 + 3 * i, 3), dtype=np.uint8)
        img = Image.fromarray(arr)
        out.append(img.convert("L") if i == 1 else img)
    return out


TEXTS = ["the nice dog", "This is a blue photo", "a", "the nice ice cream", "zebra"]


def test_safetensors_outputs_match_open_clip_reference(tiny):
    model, sf_path, _ = tiny
    enc = CLIPEncoder(TINY, pretrained=str(sf_path))
    txt = enc.encode_texts(TEXTS, batch_size=2)
    imgs = _images(4)
    img = enc.encode_images(imgs, batch_size=3)

    assert txt.shape == (len(TEXTS), 32) and txt.dtype == np.float32
    assert img.shape == (4, 32) and img.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)

    # Independent reference: open_clip's own loader and eval transform for the same file.
    ref_model, _, ref_preprocess = open_clip.create_model_and_transforms(
        TINY, pretrained=str(sf_path)
    )
    ref_model.eval()
    tok = open_clip.get_tokenizer(TINY)
    with torch.no_grad():
        ref_txt = torch.nn.functional.normalize(ref_model.encode_text(tok(TEXTS)), dim=-1)
        batch = torch.stack([ref_preprocess(im.convert("RGB")) for im in imgs])
        ref_img = torch.nn.functional.normalize(ref_model.encode_image(batch), dim=-1)
        # ... and the in-memory model the file was saved from.
        orig_txt = torch.nn.functional.normalize(model.encode_text(tok(TEXTS)), dim=-1)
    np.testing.assert_allclose(txt, ref_txt.numpy(), atol=1e-5)
    np.testing.assert_allclose(img, ref_img.numpy(), atol=1e-5)
    np.testing.assert_allclose(txt, orig_txt.numpy(), atol=1e-5)


def test_deterministic_and_batch_size_invariant(tiny):
    _, sf_path, _ = tiny
    enc = CLIPEncoder(TINY, pretrained=str(sf_path))
    a = enc.encode_texts(TEXTS, batch_size=1)
    b = enc.encode_texts(TEXTS, batch_size=5)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_array_equal(enc.encode_texts(TEXTS), enc.encode_texts(TEXTS))
    imgs = _images(3, seed=3)
    np.testing.assert_allclose(
        enc.encode_images(imgs, batch_size=1), enc.encode_images(imgs, batch_size=3), atol=1e-6
    )
    # Different inputs give different embeddings (the model is not degenerate).
    assert not np.allclose(a[0], a[1])


def test_trimmed_text_forward_equals_full_context(tiny):
    _, sf_path, _ = tiny
    texts = TEXTS + ["the nice hot dog bun with mustard onions and relish on a plate"] * 2
    trimmed = CLIPEncoder(TINY, pretrained=str(sf_path)).encode_texts(texts, batch_size=3)
    full = CLIPEncoder(TINY, pretrained=str(sf_path), trim_text_padding=False)
    np.testing.assert_allclose(trimmed, full.encode_texts(texts, batch_size=3), atol=1e-5)
    # Output order is the input order, whatever the length-sorted batching did.
    np.testing.assert_allclose(trimmed[::-1], full.encode_texts(texts[::-1]), atol=1e-5)
    assert full.encode_texts([]).shape == (0, 32)


def test_pt_checkpoint_loads_the_same_weights(tiny):
    _, sf_path, pt_path = tiny
    a = CLIPEncoder(TINY, pretrained=str(sf_path)).encode_texts(TEXTS)
    b = CLIPEncoder(TINY, pretrained=str(pt_path)).encode_texts(TEXTS)
    np.testing.assert_array_equal(a, b)


def test_image_paths_and_exposed_preprocess(tiny, tmp_path):
    _, sf_path, _ = tiny
    enc = CLIPEncoder(TINY, pretrained=str(sf_path))
    imgs = _images(2, seed=5)
    paths = []
    for i, im in enumerate(imgs):
        p = tmp_path / f"im{i}.png"
        im.save(p)
        paths.append(str(p))
    np.testing.assert_allclose(enc.encode_images(paths), enc.encode_images(imgs), atol=1e-6)
    assert tuple(enc.preprocess(imgs[0]).shape) == (3, 32, 32)
    with pytest.raises(OODInputError, match="PIL images or file paths"):
        enc.encode_images([np.zeros((4, 4, 3))])


def test_progress_callback_gets_done_and_total(tiny):
    _, sf_path, _ = tiny
    enc = CLIPEncoder(TINY, pretrained=str(sf_path))
    seen = []
    enc.encode_texts(TEXTS, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
    seen.clear()
    enc.encode_images(_images(3), batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 3), (3, 3)]


def test_weights_identity_tracks_file_and_quick_gelu(tiny, tmp_path):
    model, sf_path, _ = tiny
    enc = CLIPEncoder(TINY, pretrained=str(sf_path), lazy=True)
    assert TINY in enc.weights_identity
    assert enc.weights_identity == CLIPEncoder(TINY, pretrained=str(sf_path), lazy=True).weights_identity
    # Same weights, perturbed: a different file gives a different identity.
    from safetensors.torch import save_file

    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    state["text_projection"] += 0.01
    other = tmp_path / "other.safetensors"
    save_file(state, str(other))
    assert CLIPEncoder(TINY, pretrained=str(other), lazy=True).weights_identity != enc.weights_identity
    # QuickGELU changes the activations, hence the outputs and the identity.
    q = CLIPEncoder(TINY, pretrained=str(sf_path), quick_gelu=True)
    assert q.weights_identity != enc.weights_identity
    assert not np.allclose(q.encode_texts(TEXTS), enc.encode_texts(TEXTS), atol=1e-4)


class NotATensor:
    """A custom class: unpickling it needs code execution, which weights_only refuses."""


def test_pickle_only_checkpoint_is_refused(tiny, tmp_path):
    model, _, _ = tiny
    bad = tmp_path / "pickled.pt"
    torch.save({"state_dict": model.state_dict(), "meta": NotATensor()}, str(bad))
    with pytest.raises(UnsafeCheckpointError) as err:
        CLIPEncoder(TINY, pretrained=str(bad))
    assert str(bad) in str(err.value) and "safetensors" in str(err.value)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(UnsafeCheckpointError, match="TorchScript"):
        CLIPEncoder(TINY, pretrained=str(path))


def test_garbage_file_is_an_input_error(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(OODInputError, match="not a readable PyTorch checkpoint"):
        CLIPEncoder(TINY, pretrained=str(path))


def test_missing_file_raises_weights_not_found(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsNotFoundError) as err:
        CLIPEncoder(TINY, pretrained=str(missing))
    msg = str(err.value)
    assert str(missing) in msg and TINY in msg and 'pretrained="/path/to/weights.safetensors"' in msg


def test_unreachable_hub_tag_raises_weights_not_found(tmp_path, monkeypatch):
    # HF_HUB_OFFLINE is Hugging Face's documented switch; with an empty cache the tag
    # cannot resolve. The encoder must fail fast with instructions, not a hub trace.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = CLIPEncoder("ViT-B-16", pretrained="openai", hub_cache_dir=str(tmp_path), lazy=True)
    assert enc.quick_gelu is True  # OpenAI weights need QuickGELU
    assert "tag:openai" in enc.weights_identity
    with pytest.raises(WeightsNotFoundError) as err:
        enc.encode_texts(["a dog"])
    msg = str(err.value)
    assert "ViT-B-16" in msg and "'openai'" in msg
    assert 'pretrained="/path/to/weights.safetensors"' in msg and "quick_gelu=True" in msg
    with pytest.raises(WeightsNotFoundError):
        CLIPEncoder("ViT-B-16", pretrained="openai", hub_cache_dir=str(tmp_path))


def test_unknown_tag_model_and_mismatched_weights(tiny, tiny_clip_factory):
    _, sf_path, _ = tiny
    with pytest.raises(OODInputError, match="known tags"):
        CLIPEncoder("ViT-B-16", pretrained="no-such-tag")
    with pytest.raises(OODInputError, match="not an open_clip architecture"):
        CLIPEncoder("ViT-Q-99", pretrained=str(sf_path))
    with pytest.raises(OODInputError, match="Randomly initialised"):
        CLIPEncoder(TINY, pretrained=None)
    # Weights of the tiny model do not fit a different architecture.
    tiny_clip_factory(name="ood-test-tiny-clip-16", embed_dim=16)
    with pytest.raises(OODInputError, match="do not fit"):
        CLIPEncoder("ood-test-tiny-clip-16", pretrained=str(sf_path))


def _resave(state, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


def test_weights_that_do_not_fit_are_refused_with_the_keys_and_the_fix(tiny, tmp_path):
    model, _, _ = tiny
    state = model.state_dict()
    prefixed = _resave({"module.clip." + k: v for k, v in state.items()}, tmp_path / "wrapped.safetensors")
    with pytest.raises(OODInputError) as err:
        CLIPEncoder(TINY, pretrained=prefixed)
    msg = str(err.value)
    assert "wrapped.safetensors" in msg and "'visual.class_embedding'" in msg
    assert "prefixed with 'clip.': strip the prefix" in msg  # "module." is unwrapped already
    partial = _resave({k: v for k, v in state.items() if k != "text_projection"}, tmp_path / "partial.safetensors")
    with pytest.raises(OODInputError, match=r"1 tensor\(s\) the model needs are missing \('text_projection'\)"):
        CLIPEncoder(TINY, pretrained=partial)
    extra = _resave(dict(state, extra_head=torch.zeros(3)), tmp_path / "extra.safetensors")
    with pytest.raises(OODInputError, match=r"unexpected \('extra_head'\).*model_name"):
        CLIPEncoder(TINY, pretrained=extra)


def test_image_files_are_decoded_upright_and_bombs_name_the_file(tiny, tmp_path, monkeypatch, one_torch_thread):
    from PIL import Image

    from ood_core.images import ImageLoadError

    _, sf_path, _ = tiny
    enc = CLIPEncoder(TINY, pretrained=str(sf_path))
    arr = np.zeros((32, 48, 3), np.uint8)
    arr[:, :16] = [255, 0, 0]
    arr[:, 16:] = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to show"
    tagged, plain = tmp_path / "sideways.jpg", tmp_path / "plain.jpg"
    Image.fromarray(arr).save(tagged, quality=95, exif=exif)
    Image.fromarray(arr).save(plain, quality=95)
    upright = Image.fromarray(np.rot90(np.asarray(Image.open(plain).convert("RGB")), k=-1))
    np.testing.assert_allclose(enc.encode_images([str(tagged)]), enc.encode_images([upright]), atol=1e-6)

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    bomb = tmp_path / "bomb.png"
    Image.new("RGB", (20, 20)).save(bomb)  # 400 px > 2 x 100: PIL refuses to decode
    # ImageLoadError is what the dataset-level loops skip with skip_failures=True.
    with pytest.raises(ImageLoadError, match=r"bomb\.png.*skip_failures=True"):
        enc.encode_images([str(bomb)])
