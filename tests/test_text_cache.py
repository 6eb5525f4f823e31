"""Disk cache of candidate text embeddings: hits, misses and invalidation."""

import json

import numpy as np
import open_clip
import pytest
import torch

from ood_core.cache import cache_root
from ood_core.clip.encoder import CLIPEncoder
from ood_core.clip.text_cache import (
    build_prompts,
    cached_text_embeddings,
    text_cache_key,
)
from ood_core.errors import OODInputError

TINY = "ood-test-tiny-clip-cache"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TEMPLATES = {"noun": "the nice {}", "adj": "This is a {} photo"}
WORDS = ["dog", "ice cream", "blue", "happy", "blue"]
POS = ["noun", "noun", "noun", "adj", "adj"]


def save_tiny_weights(folder, seed):
    """Random tiny open_clip weights (seeded) in a local safetensors file."""
    from safetensors.torch import save_file

    cfg_path = folder / f"{TINY}.json"
    cfg_path.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY)
    path = folder / f"weights-{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


class CountingEncoder(CLIPEncoder):
    """CLIPEncoder that records every encode_texts call."""

    def __init__(self, *args, **kwargs):
        self.calls = []
        super().__init__(*args, **kwargs)

    def encode_texts(self, texts, batch_size=256, progress=None):
        self.calls.append(list(texts))
        return super().encode_texts(texts, batch_size=batch_size, progress=progress)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_cache")
    return save_tiny_weights(folder, seed=0), save_tiny_weights(folder, seed=1)


def test_second_call_is_served_from_disk(weights, tmp_path):
    enc = CountingEncoder(TINY, pretrained=str(weights[0]))
    first = cached_text_embeddings(enc, WORDS, POS, TEMPLATES, cache_dir=tmp_path)
    assert len(enc.calls) == 1
    assert enc.calls[0] == build_prompts(WORDS, POS, TEMPLATES)
    assert enc.calls[0][2] == "the nice blue" and enc.calls[0][4] == "This is a blue photo"
    second = cached_text_embeddings(enc, WORDS, POS, TEMPLATES, cache_dir=tmp_path)
    assert len(enc.calls) == 1  # no re-encoding
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32 and first.shape == (len(WORDS), 32)
    np.testing.assert_array_equal(first, enc.encode_texts(build_prompts(WORDS, POS, TEMPLATES)))
    # A fresh encoder object over the same file also hits, without building its model.
    lazy = CountingEncoder(TINY, pretrained=str(weights[0]), lazy=True)
    third = cached_text_embeddings(lazy, WORDS, POS, TEMPLATES, cache_dir=tmp_path)
    assert lazy.calls == [] and lazy._model is None
    np.testing.assert_array_equal(first, third)
    meta = json.loads(next((tmp_path / "text_embeddings").glob("*.json")).read_text())
    assert meta["num_words"] == 5 and meta["num_adjectives"] == 2 and meta["dtype"] == "float32"


def test_different_weights_file_gets_its_own_entry(weights, tmp_path):
    a = CountingEncoder(TINY, pretrained=str(weights[0]))
    b = CountingEncoder(TINY, pretrained=str(weights[1]))
    ea = cached_text_embeddings(a, WORDS, POS, TEMPLATES, cache_dir=tmp_path)
    eb = cached_text_embeddings(b, WORDS, POS, TEMPLATES, cache_dir=tmp_path)
    assert len(a.calls) == 1 and len(b.calls) == 1
    assert not np.allclose(ea, eb)
    assert len(list((tmp_path / "text_embeddings").glob("*.npy"))) == 2
    # Each still hits its own entry.
    np.testing.assert_array_equal(cached_text_embeddings(a, WORDS, POS, TEMPLATES, cache_dir=tmp_path), ea)
    np.testing.assert_array_equal(cached_text_embeddings(b, WORDS, POS, TEMPLATES, cache_dir=tmp_path), eb)
    assert len(a.calls) == 1 and len(b.calls) == 1


def test_key_depends_on_every_input():
    base = dict(model_name="m", weights_identity="w", words=WORDS, pos=POS, templates=TEMPLATES)
    key = text_cache_key(**base)
    assert key == text_cache_key(**base)
    variants = [
        dict(base, model_name="m2"),
        dict(base, weights_identity="w2"),
        dict(base, words=WORDS[::-1], pos=POS[::-1]),
        dict(base, pos=["noun"] * 5),
        dict(base, templates={"noun": "a photo of a {}", "adj": TEMPLATES["adj"]}),
        dict(base, words=WORDS[:-1], pos=POS[:-1]),
    ]
    keys = {text_cache_key(**v) for v in variants}
    assert key not in keys and len(keys) == len(variants)
    assert text_cache_key(**base, dtype="float16") != key
    # Word boundaries are unambiguous: ("ab", "c") is not ("a", "bc").
    k1 = text_cache_key("m", "w", ["ab", "c"], ["noun", "noun"], TEMPLATES)
    k2 = text_cache_key("m", "w", ["a", "bc"], ["noun", "noun"], TEMPLATES)
    assert k1 != k2


def test_float16_storage_and_corrupt_entry_recovery(weights, tmp_path):
    enc = CountingEncoder(TINY, pretrained=str(weights[0]))
    exact = cached_text_embeddings(enc, WORDS, POS, TEMPLATES, cache_dir=tmp_path)
    half_miss = cached_text_embeddings(enc, WORDS, POS, TEMPLATES, cache_dir=tmp_path, dtype="float16")
    half_hit = cached_text_embeddings(enc, WORDS, POS, TEMPLATES, cache_dir=tmp_path, dtype="float16")
    assert len(enc.calls) == 2
    np.testing.assert_array_equal(half_miss, half_hit)
    np.testing.assert_allclose(half_hit, exact, atol=2e-3)
    assert half_hit.dtype == np.float32
    # Truncate the float32 entry: it must be recomputed, not crash or return garbage.
    npy = [p for p in (tmp_path / "text_embeddings").glob("*.npy")
           if np.load(p).dtype == np.float32][0]
    npy.write_bytes(npy.read_bytes()[:40])
    again = cached_text_embeddings(enc, WORDS, POS, TEMPLATES, cache_dir=tmp_path)
    assert len(enc.calls) == 3
    np.testing.assert_array_equal(again, exact)


def test_bad_inputs_and_default_dir(weights, tmp_path, monkeypatch):
    enc = CLIPEncoder(TINY, pretrained=str(weights[0]), lazy=True)
    with pytest.raises(OODInputError, match="no prompt template"):
        cached_text_embeddings(enc, ["dog"], ["verb"], TEMPLATES, cache_dir=tmp_path)
    with pytest.raises(OODInputError, match="one POS per word"):
        cached_text_embeddings(enc, ["dog", "cat"], ["noun"], TEMPLATES, cache_dir=tmp_path)
    with pytest.raises(OODInputError, match="exactly one"):
        cached_text_embeddings(enc, ["dog"], ["noun"], {"noun": "a photo"}, cache_dir=tmp_path)
    with pytest.raises(OODInputError, match="dtype"):
        cached_text_embeddings(enc, ["dog"], ["noun"], TEMPLATES, cache_dir=tmp_path, dtype="int8")
    monkeypatch.setenv("FIFTYONE_OOD_CACHE_DIR", str(tmp_path / "envcache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == str(tmp_path / "envcache")  # the package variable wins
    cached_text_embeddings(enc, ["dog"], ["noun"], TEMPLATES)
    assert len(list((tmp_path / "envcache" / "text_embeddings").glob("*.npy"))) == 1
    monkeypatch.delenv("FIFTYONE_OOD_CACHE_DIR")
    assert cache_root() == str(tmp_path / "xdg" / "fiftyone-ood")
