"""Weight sources: bundled offline weights, user files (safe only), clear errors."""

import os
import pickle

import numpy as np
import pytest
import torch

from ood_core import cache as C
from ood_core import weights as W
from ood_core.errors import OODInputError, UnsafeCheckpointError, WeightsNotFoundError
from photo_helpers import foolbox_imagenet


def test_bundled_lite0_conversion_loads_strictly_into_timm():
    import timm

    path = W.bundled_weights_file("tf_efficientnet_lite0")
    assert path is not None and path.endswith(".safetensors")
    from safetensors.torch import load_file

    state = load_file(path)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    result = model.load_state_dict(state, strict=True)  # raises on any missing/unexpected key
    assert not result.missing_keys and not result.unexpected_keys
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(state) == expected


@pytest.mark.parametrize("model_name", sorted(W.BUNDLED_WEIGHTS))
def test_bundled_weights_classify_real_imagenet_images(model_name):
    """A wrong renaming still 'loads' but predicts garbage; real images catch it (every bundled backbone)."""
    import timm

    from ood_core.images import load_rgb

    model, source = W.create_timm_model(model_name, weights="bundled")
    assert source["kind"] == "bundled"
    model.eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    tf = timm.data.create_transform(**cfg)
    files, labels = foolbox_imagenet()
    assert len(files) == 20
    x = torch.stack([tf(load_rgb(f)) for f in files])
    with torch.inference_mode():
        pred = model(x).argmax(1).numpy()
    correct = int((pred == np.array(labels)).sum())
    # Measured: Lite0, Lite1 and Lite2 18/20 each; chance is 0.02/20.
    assert correct >= 15, f"{model_name}: only {correct}/20 correct: the weight conversion is broken"


def test_user_file_safetensors_and_pt_load_exact_values(tmp_path):
    import timm
    from safetensors.torch import save_file

    ref = timm.create_model("resnet18", pretrained=False)
    state = {k: v for k, v in ref.state_dict().items()}
    st_path = str(tmp_path / "r18.safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, st_path)
    pt_path = str(tmp_path / "r18.pt")
    torch.save({"state_dict": state}, pt_path)
    for path in (st_path, pt_path):
        model, source = W.create_timm_model("resnet18", weights=path, features_only=True, out_indices=(1,))
        assert source["kind"] == "file" and source["path"] == path
        got = dict(model.named_parameters())
        # features_only keeps the original names for ResNet's stem and layers
        assert torch.equal(got["conv1.weight"], state["conv1.weight"])
        assert torch.equal(got["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_unsafe_pickle_checkpoint_is_refused_and_never_executed(tmp_path):
    marker = str(tmp_path / "pwned")
    path = str(tmp_path / "evil.pt")
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil(marker)}, f)
    with pytest.raises(UnsafeCheckpointError, match="evil.pt"):
        W.create_timm_model("resnet18", weights=path)
    assert not os.path.exists(marker), "loading the checkpoint executed pickled code"


@pytest.fixture
def offline_empty_cache(monkeypatch, tmp_path):
    """No hub and an empty HF / torch-hub cache, whatever this machine has cached."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(W, "_HUB_REACHABLE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torchhub"))
    yield
    torch.hub.set_dir(old)


def test_missing_weights_error_names_model_and_ways(offline_empty_cache):
    with pytest.raises(WeightsNotFoundError) as e:
        W.create_timm_model("resnet10t", weights=None)
    msg = str(e.value)
    assert "resnet10t" in msg
    for way in ("weights='/path/to/resnet10t.safetensors'", "HF_HOME", "tf_efficientnet_lite0", "weights='random'"):
        assert way in msg


def test_missing_file_and_bad_model_name(tmp_path):
    with pytest.raises(OODInputError, match="does not exist"):
        W.create_timm_model("resnet18", weights=str(tmp_path / "nope.safetensors"))
    with pytest.raises(OODInputError, match="not a timm model"):
        W.create_timm_model("resnet_does_not_exist", weights="random")


def test_random_weights_only_when_asked():
    model, source = W.create_timm_model("resnet18", weights="random")
    assert source == {"model_name": "resnet18", "kind": "random"}
    assert sum(p.numel() for p in model.parameters()) > 1e6


def test_auto_backbone_falls_back_to_bundled_when_hub_unreachable(offline_empty_cache):
    _, source = W.create_timm_model("auto", features_only=True, out_indices=(0,))
    assert source["model_name"] == "tf_efficientnet_lite0"
    assert source["kind"] == "bundled"


def test_hub_weights_from_local_cache_win_over_bundled(tmp_path, monkeypatch):
    """The second link of the chain: a populated HF cache is used while offline."""
    import huggingface_hub.constants as hf_constants
    import timm
    from safetensors.torch import save_file

    monkeypatch.setattr(W, "_HUB_REACHABLE", False)
    cache = tmp_path / "hf"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    # Lay out a cache entry exactly as huggingface_hub does (refs/main -> snapshot).
    repo = cache / "models--timm--resnet10t.c3_in1k"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    ref = timm.create_model("resnet10t", pretrained=False)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(snap / "model.safetensors"))
    model, source = W.create_timm_model("resnet10t", weights=None)
    assert source["kind"] == "hub"
    assert torch.equal(model.state_dict()["conv1.0.weight"], ref.state_dict()["conv1.0.weight"])


def test_expected_head_drop_is_not_reported_as_a_warning(caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="timm"):
        W.create_timm_model("tf_efficientnet_lite0", weights="bundled", features_only=True)
    assert not [r for r in caplog.records if "Unexpected keys" in r.getMessage()]
    # a full model still loads every key strictly, so nothing is hidden there either
    with caplog.at_level(logging.WARNING, logger="timm"):
        W.create_timm_model("tf_efficientnet_lite0", weights="bundled")
    assert not [r for r in caplog.records if "Unexpected keys" in r.getMessage()]


@pytest.fixture
def private_identity_cache(monkeypatch, tmp_path):
    """An empty identity cache (memory and disk) of this test's own."""
    monkeypatch.setenv(C.ENV_CACHE_DIR, str(tmp_path / "cache"))
    monkeypatch.setattr(C, "_IDENTITY_MEMO", {}, raising=False)


def _age(path, seconds=3600):
    """Give a file an mtime in the past, as any file not written just now has."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def test_identity_hashes_the_whole_file(private_identity_cache, tmp_path):
    path = tmp_path / "weights.bin"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes())
    path.write_bytes(bytes(data))
    _age(path)
    before = C.file_identity(path)
    data[len(data) // 2] ^= 0xFF  # one byte in the middle, same size
    path.write_bytes(bytes(data))
    assert C.file_identity(path) != before
    copy = tmp_path / "copy.bin"
    copy.write_bytes(bytes(data))
    assert C.file_identity(copy) == C.file_identity(path)  # content, not path


def test_identity_of_an_unchanged_file_is_hashed_once(private_identity_cache, tmp_path, monkeypatch):
    hashed = []
    real_hash = C._hash_file
    monkeypatch.setattr(C, "_hash_file", lambda p: hashed.append(p) or real_hash(p))
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 5000)
    _age(path)
    first = C.file_identity(str(path))
    assert C.file_identity(str(path)) == first
    assert len(hashed) == 1
    # A new process: the memory memo is empty, the JSON cache under the cache dir answers.
    monkeypatch.setattr(C, "_IDENTITY_MEMO", {})
    assert C.file_identity(str(path)) == first
    assert len(hashed) == 1
    cache_file = tmp_path / "cache" / "identity" / "file_identity.json"
    assert first in cache_file.read_text()
    # A changed file (new mtime) is hashed again.
    path.write_bytes(b"y" * 5000)
    assert C.file_identity(str(path)) != first
    assert len(hashed) == 2


def test_identity_of_a_file_replaced_with_its_old_size_and_mtime_is_hashed_again(private_identity_cache, tmp_path,
                                                                                 monkeypatch):
    """Another checkpoint of the same size copied in with the old modification time (cp -p, rsync -a, an archive)
    kept the old identity: cached text embeddings of the old weights were returned for the new ones."""
    path, other = tmp_path / "weights.bin", tmp_path / "other.bin"
    path.write_bytes(b"a" * 5000)
    other.write_bytes(b"b" * 5000)
    _age(path)
    old = os.stat(path)
    first = C.file_identity(path)
    os.replace(other, path)  # a new file under the name (new inode) ...
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))  # ... with the old mtime
    assert os.stat(path).st_size == old.st_size and os.stat(path).st_mtime_ns == old.st_mtime_ns
    assert C.file_identity(path) != first
    monkeypatch.setattr(C, "_IDENTITY_MEMO", {})  # a new process: the JSON cache must not answer either
    path.write_bytes(b"c" * 5000)  # rewritten in place (same inode), the old mtime again
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert C.file_identity(path) == C._hash_file(str(path)) != first


def test_identity_of_a_just_written_file_is_not_cached(private_identity_cache, tmp_path):
    """Within one mtime tick a rewrite keeps size and mtime: such files are hashed every time."""
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 100)
    first = C.file_identity(path)
    st = os.stat(path)
    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same tick
    assert C.file_identity(path) != first


@pytest.fixture(scope="module")
def resnet18_state():
    import timm

    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in timm.create_model("resnet18", pretrained=False).state_dict().items()}


def _save(state, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


def test_prefixed_checkpoint_is_refused_with_the_prefix_fix(resnet18_state, tmp_path):
    path = _save({"backbone." + k: v for k, v in resnet18_state.items()}, tmp_path / "det.safetensors")
    with pytest.raises(OODInputError) as e:
        W.create_timm_model("resnet18", weights=path, features_only=True)
    msg = str(e.value)
    assert "det.safetensors" in msg and "'resnet18'" in msg
    assert "'conv1.weight'" in msg  # a missing key
    assert "'backbone.bn1.bias'" in msg  # an unexpected key
    assert "prefixed with 'backbone.': strip the prefix" in msg


def test_incomplete_checkpoint_is_refused_unless_the_chosen_levels_have_everything(resnet18_state, tmp_path):
    partial = {k: v for k, v in resnet18_state.items() if not k.startswith("layer3.")}
    path = _save(partial, tmp_path / "partial.safetensors")
    with pytest.raises(OODInputError) as e:
        W.create_timm_model("resnet18", weights=path, features_only=True)
    msg = str(e.value)
    assert "missing" in msg and "'layer3.0.conv1.weight'" in msg and "model_name" in msg
    # Levels up to layer1 need nothing from layer3: the file fits that backbone, exactly.
    model, _ = W.create_timm_model("resnet18", weights=path, features_only=True, out_indices=(1,))
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], resnet18_state["layer1.0.conv1.weight"])


def test_unexpected_and_misshapen_keys_are_refused(resnet18_state, tmp_path):
    extra = dict(resnet18_state, **{"projector.weight": torch.zeros(4, 4)})
    with pytest.raises(OODInputError, match=r"unexpected \('projector.weight'\)"):
        W.create_timm_model("resnet18", weights=_save(extra, tmp_path / "extra.safetensors"), features_only=True)
    bad = dict(resnet18_state, **{"layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)})
    with pytest.raises(OODInputError) as e:
        W.create_timm_model("resnet18", weights=_save(bad, tmp_path / "bad.safetensors"), features_only=True)
    assert "'layer1.0.conv1.weight': file (64, 64, 1, 1) vs model (64, 64, 3, 3)" in str(e.value)


def test_a_dropped_or_retrained_head_is_not_a_mismatch_for_a_backbone(resnet18_state, tmp_path):
    # A fine-tuned 10-class head (and the ImageNet head) is not part of a features-only model.
    tuned = dict(resnet18_state, **{"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)})
    model, _ = W.create_timm_model("resnet18", weights=_save(tuned, tmp_path / "tuned.safetensors"),
                                   features_only=True)
    assert torch.equal(model.state_dict()["layer4.1.bn2.weight"], resnet18_state["layer4.1.bn2.weight"])


def test_auto_with_a_weights_file_picks_the_architecture_it_fits(resnet18_state, tmp_path):
    from safetensors.torch import load_file

    lite0 = W.bundled_weights_file("tf_efficientnet_lite0")
    model, source = W.create_timm_model("auto", weights=lite0, features_only=True)
    assert source["model_name"] == "tf_efficientnet_lite0" and source["kind"] == "file"
    assert torch.equal(model.state_dict()["conv_stem.weight"], load_file(lite0)["conv_stem.weight"])
    with pytest.raises(OODInputError) as e:
        W.create_timm_model("auto", weights=_save(resnet18_state, tmp_path / "r18.safetensors"), features_only=True)
    msg = str(e.value)
    assert "fits none" in msg and "resnet50:" in msg and "tf_efficientnet_lite0:" in msg
    assert "'layer1.0.conv3.weight'" in msg  # resnet50's bottleneck conv that resnet18 lacks
