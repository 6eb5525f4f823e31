"""The audit's export step, probed as a user would run it, on the tests' private MongoDB:

1. an earlier export that a dataset was loaded from (``fo.Dataset.from_dir``: its media stay in the folder) was
   replaced by the next export into it, deleting the media of the samples the new export did not hold, also when
   the audited dataset was that one (an export into its own media folder);
2. an export folder given through a symbolic link (to an empty folder) was refused only at the export step, after
   the runs were written, saying files had been put there while the audit ran;
3. flagged samples whose media files are missing (precomputed embeddings, images moved since) stopped the audit at
   the export step with a bare ``FileNotFoundError``;
4. a file of an earlier export that the user changed since (an image retouched, the labels of ``samples.json``
   corrected by hand) counted as the export's own, and the next export deleted the change.

Each test fails without the fix it covers.
"""

import os
import uuid

import numpy as np
import pytest

import ood_core as ood
from ood_core.errors import OODInputError


def _images(root, count):
    from PIL import Image

    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    paths = [os.path.join(root, f"img{i}.png") for i in range(count)]
    for p in paths:
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L").save(p)
    return paths


def _vectors(ds, seed):
    ds.set_values("vec", list(np.random.default_rng(seed).normal(size=(len(ds), 8)).astype(np.float32)))


@pytest.fixture
def media(dataset_factory, tmp_path):
    """30 samples with real (tiny) images and 8-d vectors 'vec'; the first 10 tagged 'trusted'."""
    ds = dataset_factory(_images(str(tmp_path / "media"), 30), tags=[["trusted"] if i < 10 else [] for i in range(30)])
    _vectors(ds, 1)
    return ds


def _audit(ds, tmp_path, **kwargs):
    kwargs.setdefault("report_path", str(tmp_path / "r.html"))
    kwargs.setdefault("label_field", None)
    return ood.audit(ds, embeddings_field="vec", reference="trusted", near_duplicates=False, **kwargs)


@pytest.mark.parametrize("audited", ["loaded", "original"])
def test_an_earlier_export_a_dataset_was_loaded_from_keeps_its_media(media, tmp_path, audited):
    import fiftyone as fo

    export = str(tmp_path / "export")
    first = _audit(media, tmp_path, export_dir=export, ood_pass_rate=0.5)
    assert first["num_ood_flagged"] > 2
    loaded = fo.Dataset.from_dir(export, fo.types.FiftyOneDataset, name=f"loaded-{uuid.uuid4().hex[:8]}")
    try:
        assert all(p.startswith(export + os.sep) for p in loaded.values("filepath"))
        if audited == "loaded":  # its media folder is the export: audited under another key, fewer flagged
            _vectors(loaded, 5)
            target, kwargs = loaded, dict(audit_key="again", report_path=str(tmp_path / "again.html"))
        else:  # the original dataset again, flagging fewer samples
            target, kwargs = media, dict(overwrite=True, ood_pass_rate=0.9)
        runs_before = sorted(ood.list_ood_runs(target))
        with pytest.raises(OODInputError, match=r"export_dir=.*export.* holds media files of dataset "
                                                rf"'{loaded.name}'.*would delete them\. Pass a new folder"):
            _audit(target, tmp_path, export_dir=export, **kwargs)
        assert all(os.path.isfile(p) for p in loaded.values("filepath"))
        assert sorted(ood.list_ood_runs(target)) == runs_before  # refused before anything was written
    finally:
        loaded.delete()
    again = _audit(media, tmp_path, export_dir=export, overwrite=True, ood_pass_rate=0.9)  # gone: replaced again
    assert again["export_dir"] == export and len(os.listdir(os.path.join(export, "data"))) < first["num_ood_flagged"]


def test_an_export_folder_given_through_a_symbolic_link_is_its_target(media, tmp_path):
    target, link = tmp_path / "target", tmp_path / "link"
    target.mkdir()
    os.symlink(target, link)
    out = _audit(media, tmp_path, export_dir=str(link), ood_pass_rate=0.5)
    assert out["export_dir"] == str(link) and os.path.islink(link)
    assert len(os.listdir(target / "data")) == out["num_ood_flagged"] > 0
    assert sorted(os.listdir(tmp_path)) == ["link", "media", "r.html", "r_flagged.csv", "target"]
    again = _audit(media, tmp_path, export_dir=str(link), overwrite=True, ood_pass_rate=0.9)  # replaced in place
    assert os.path.islink(link) and len(os.listdir(target / "data")) == again["num_ood_flagged"]


def test_samples_with_missing_media_are_named_before_the_audit_writes(media, tmp_path):
    paths = media.values("filepath")
    for p in paths[::2]:
        os.remove(p)
    with pytest.raises(OODInputError, match=r"export_dir=.*export.*: the media files of \d+ samples with an "
                                            r"embedding in 'vec' \(any of them can be flagged\) are missing "
                                            r"\(e.g. '.*img\d+\.png'\).*then audit again; or audit without export_dir"):
        _audit(media, tmp_path, export_dir=str(tmp_path / "export"), ood_pass_rate=0.5)
    assert sorted(os.listdir(tmp_path)) == ["media"]  # no export, nor half of one beside it
    for p in paths[::2]:  # put back: the audit redone as the message says
        os.link(paths[1], p)
    out = _audit(media, tmp_path, export_dir=str(tmp_path / "export"), ood_pass_rate=0.5, overwrite=True)
    assert len(os.listdir(tmp_path / "export" / "data")) == out["num_ood_flagged"] > 0


@pytest.mark.parametrize("edited", ["samples.json", "an image"])
def test_a_file_of_an_earlier_export_the_user_changed_is_kept(media, tmp_path, edited):
    export = tmp_path / "export"
    _audit(media, tmp_path, export_dir=str(export), ood_pass_rate=0.5)
    name = "samples.json" if edited == "samples.json" else os.path.join("data", sorted(os.listdir(export / "data"))[0])
    changed = (export / name).read_bytes().replace(b"img", b"IMG") + b" "  # the user's correction
    (export / name).write_bytes(changed)
    runs_before = sorted(ood.list_ood_runs(media))
    with pytest.raises(OODInputError, match=rf"export_dir=.*export.* already holds files that fiftyone-ood did not "
                                            rf"export \(e.g. '{name}'\).*a file it exported counts as yours once "
                                            r"changed\)\. Pass a new folder"):
        _audit(media, tmp_path, export_dir=str(export), overwrite=True, ood_pass_rate=0.9)
    assert (export / name).read_bytes() == changed and sorted(ood.list_ood_runs(media)) == runs_before
    again = _audit(media, tmp_path, export_dir=str(tmp_path / "new"), overwrite=True, ood_pass_rate=0.9)
    assert again["export_dir"] == str(tmp_path / "new") and (export / name).read_bytes() == changed
