"""Embeddings refilled after FiftyOne's own edits, and the errors that name the item, the problem and the fix.

Each test pins a bug found by a probe and fails on the code before its fix (real FiftyOne datasets on the tests'
MongoDB, real 32 x 32 Fashion-MNIST PNGs, the real timm backbone, the tiny open_clip model of conftest):

- an embeddings field deleted or renamed by hand could not be computed again without ``overwrite=True`` (the
  call went to "fill in" a field that was gone, failed with "replaced or deleted by another process" and left
  the run record at ``status="filling"``); a field made again by hand under the name stays refused;
- the PCA fit's error named an unreadable image "item N" instead of its sample;
- CLIP: an image its preprocessing cannot take stopped the whole run, even with ``skip_failures=True``, without
  naming the file;
- a file this user may not read was called undecodable, with the advice to re-export it.
"""

import os

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError
from ood_core.images import ImageLoadError

FAST = dict(batch_size=8, chunk_size=8, progress=False, num_workers=0)
#: the session extractor's settings (tests/conftest.py: levels [1, 2, 3], grid 1)
SETTINGS = dict(model_name="tf_efficientnet_lite0", levels=[1, 2, 3], mode="pool", grid=1)


@pytest.fixture
def embedded(dataset_factory, fashion_files, session_extractor):
    """6 images with complete embeddings ``emb`` (and the vectors, by sample id)."""
    paths, names = fashion_files
    ds = dataset_factory(paths[:6], names[:6])
    ood.compute_pyramid_embeddings(ds, "emb", **SETTINGS, **FAST)
    return ds, dict(zip(ds.values("id"), ds.values("emb")))


def _assert_complete_run(ds, field, vectors):
    """The run ``field`` is complete, lists ``field`` (owning it) and every sample holds the expected vector."""
    from ood_core.fo.ownership import run_owns

    ds.reload()
    info = ood.get_ood_run_info(ds, field)
    assert info["status"] == "complete" and info["fields"] == [field]
    assert run_owns(ds, field, field)
    got = dict(zip(ds.values("id"), ds.values(field)))
    assert set(got) == set(vectors)
    for key, vec in vectors.items():
        np.testing.assert_allclose(got[key], vec, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("by_hand", ["delete", "rename"])
def test_a_field_deleted_or_renamed_by_hand_is_computed_again(embedded, by_hand):
    ds, before = embedded
    if by_hand == "delete":
        ds.delete_sample_field("emb")
    else:
        ds.rename_sample_field("emb", "emb_old")
    # before the fix: "was replaced or deleted by another process ... Run the call again without overwrite",
    # every time, and the record stayed at status="filling"
    out = ood.compute_pyramid_embeddings(ds, "emb", **SETTINGS, **FAST)
    assert out["status"] == "complete" and out["num_computed"] == 6 and out["num_failed"] == 0
    _assert_complete_run(ds, "emb", before)
    if by_hand == "rename":  # the renamed copy is left as it was
        assert dict(zip(ds.values("id"), [list(v) for v in ds.values("emb_old")])) == \
            {k: list(v) for k, v in before.items()}
    # and the next call finds nothing missing
    again = ood.compute_pyramid_embeddings(ds, "emb", **SETTINGS, **FAST)
    assert again["num_computed"] == 0 and again["resumed"]
    _assert_complete_run(ds, "emb", before)


def test_a_field_made_again_by_hand_under_the_name_stays_refused(embedded):
    ds, before = embedded
    ds.delete_sample_field("emb")
    mine = {key: np.full(4, 7.0, np.float32) for key in before}  # the user's own vectors under the name
    ds.set_values("emb", mine, key_field="id")
    with pytest.raises(OODInputError, match="deleted and made again outside fiftyone-ood"):
        ood.compute_pyramid_embeddings(ds, "emb", **SETTINGS, **FAST)
    ds.reload()
    assert all(list(v) == [7.0] * 4 for v in ds.values("emb"))  # untouched
    assert ood.get_ood_run_info(ds, "emb")["status"] == "complete"  # never left at "filling"


def test_a_field_made_again_by_hand_while_a_fill_in_runs_is_not_written(embedded, fashion_files):
    """A fill-in (new samples added to a complete run) writes chunk by chunk; a field deleted and made again by
    hand meanwhile (here from the progress callback, as a notebook beside the call would) is the user's: before
    the fix the next chunk went into it (its name, settings and record status were all this call's)."""
    import fiftyone as fo

    ds, before = embedded
    paths, _ = fashion_files
    ds.add_samples([fo.Sample(filepath=p) for p in paths[6:10]], progress=False)
    mine = np.full(4, 7.0, np.float32)
    remade = []

    def progress(done, total):
        if not remade:  # after the first batch, before its chunk is written
            ds.delete_sample_field("emb")
            ds.set_values("emb", [mine] * len(ds))
            remade.append(done)

    with pytest.raises(OODInputError, match="replaced or deleted by another process"):
        ood.compute_pyramid_embeddings(ds, "emb", **SETTINGS, batch_size=2, chunk_size=4, num_workers=0,
                                       progress=progress)
    assert remade
    ds.reload()
    assert all(list(v) == [7.0] * 4 for v in ds.values("emb"))  # the user's vectors, none of the call's
    assert ood.get_ood_run_info(ds, "emb")["status"] == "complete"  # as before the call, not "filling"


@pytest.mark.parametrize("field", ["emb", None])
def test_an_unreadable_image_that_stops_the_pca_fit_is_named_by_its_sample(dataset_factory, fashion_files,
                                                                            session_extractor, tmp_path, field):
    """project_method="pca" embeds a fit sample first; an image that stops it is named by its sample id, as in
    the extraction proper (before: "(item N)", N counting the fit sample's items)."""
    paths, _ = fashion_files
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    ds = dataset_factory(paths[:5] + [str(bad)])
    bad_id = ds.match({"filepath": str(bad)}).first().id
    with pytest.raises(ImageLoadError, match=rf"bad\.png.*\(sample {bad_id}\); pass skip_failures=True"):
        ood.compute_pyramid_embeddings(ds, field, **SETTINGS, **FAST, project_dim=4, project_method="pca",
                                       skip_failures=False)
    if field is not None:
        ds.reload()
        assert ds.get_field(field) is None and not ds.has_field("tmp_ood_partial_emb")


@pytest.fixture
def strip_dataset(dataset_factory, fashion_files, tmp_path):
    """3 Fashion-MNIST images and a real 4000 x 3 PNG strip (the 3rd sample)."""
    from PIL import Image

    paths, _ = fashion_files
    strip = str(tmp_path / "strip.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (3, 4000, 3), dtype=np.uint8)).save(strip)
    ds = dataset_factory([paths[0], paths[1], strip, paths[2]])
    return ds, strip, ds.match({"filepath": strip}).first().id


def test_an_image_clip_preprocessing_cannot_take_is_skipped_and_named(strip_dataset, tiny_clip, one_torch_thread):
    """open_clip's "longest" resize scales a 4000 x 3 strip's long side to 32 pixels: 0 rows, and torchvision
    raises ValueError. It happened outside the per-image try: the whole encoding stopped, even with
    skip_failures=True, and the error named no file. Now it is a failure of that image (file and error), and
    with skip_failures=False an error naming the sample and the file."""
    from ood_core.clip.encoder import CLIPEncoder
    from ood_core.fo.clip_common import encode_samples

    ds, strip, strip_id = strip_dataset
    enc = CLIPEncoder(tiny_clip.name, pretrained=str(tiny_clip.safetensors), resize_mode="longest")
    keys, X, failures = encode_samples(ds, enc, batch_size=8, skip_failures=True, progress=False)
    good = [s for s in ds if s.filepath != strip]
    assert keys == [s.id for s in good]
    np.testing.assert_allclose(X, enc.encode_images([s.filepath for s in good]), rtol=1e-5, atol=1e-6)
    [failure] = failures
    assert failure["id"] == strip_id and failure["filepath"] == strip
    assert strip in failure["error"] and "4000 x 3" in failure["error"] and "ValueError" in failure["error"]
    assert "skip_failures" not in failure["error"]  # the advice to skip is left out of what is recorded
    with pytest.raises(ImageLoadError, match=rf"strip\.png.*4000 x 3.*\(sample {strip_id}\).*skip_failures=True"):
        encode_samples(ds, enc, batch_size=8, skip_failures=False, progress=False)


# --------------------------------------------------------------------------- a file this user may not read

NOBODY = 65534  # the "nobody" user and group of Debian images


def _load_as_nobody(path):
    """``str(ImageLoadError)`` of ``load_rgb(path)`` run by the user ``nobody`` (a forked child of this root
    process that gives up root: as root every file is readable, so there is no other way to meet a real
    PermissionError); the empty string when it loaded."""
    import select
    import signal

    from PIL import Image, ImageOps  # noqa: F401 (imported before the fork: the child only runs the load)

    from ood_core.images import load_rgb

    assert os.geteuid() == 0, "the tests run as root (the probe's environment)"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no exceptions out of here
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                load_rgb(path)
                message = ""
            except ImageLoadError as e:
                message = str(e)
            os.write(write_end, message.encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 30)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        chunks = []
        while ready:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode()


@pytest.fixture
def private_files(fashion_files):
    """A PNG only root may read (mode 600) in a folder anyone may enter, and a PNG anyone could read inside a
    folder only root may enter (mode 700), outside pytest's own (root-only) temporary folders."""
    import shutil
    import tempfile

    paths, _ = fashion_files
    root = tempfile.mkdtemp(prefix="ood-perm-", dir="/tmp")
    os.chmod(root, 0o755)
    private = os.path.join(root, "private.png")
    shutil.copyfile(paths[0], private)
    os.chmod(private, 0o600)
    closed = os.path.join(root, "closed")
    os.mkdir(closed, 0o700)
    inside = os.path.join(closed, "inside.png")
    shutil.copyfile(paths[0], inside)
    os.chmod(inside, 0o644)
    yield private, inside
    shutil.rmtree(root)


def test_a_file_this_user_may_not_read_is_named_unreadable_with_the_permissions_fix(private_files):
    """Before: "could not be decoded (PermissionError: ...); re-export the file" for the file, and "does not
    exist; fix the sample's filepath" for the file in a closed folder: both send the user the wrong way."""
    private, inside = private_files
    # a folder nobody may not enter is still named a folder (it can be seen to be one)
    assert "is a folder, not an image file" in _load_as_nobody(os.path.dirname(inside))
    for path, fix in ((private, "fix the file's permissions"),
                      (inside, "fix the permissions of the file and of its folders")):
        message = _load_as_nobody(path)
        assert f"image file {path!r} cannot be read by this user" in message and "PermissionError" in message
        assert fix in message and message.endswith("or pass skip_failures=True to skip it")
        assert "decoded" not in message and "re-export" not in message and "does not exist" not in message
    assert _load_as_nobody(os.path.join(os.path.dirname(private), "gone.png")).endswith("does not exist; fix the "
                                                                                       "sample's filepath or delete the sample")
