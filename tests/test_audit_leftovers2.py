"""What an audit's export leaves beside its folder when the audit is deleted, redone or killed, each reproduced on
real images (Fashion-MNIST PNG files), real folders, the tests' private MongoDB and audits SIGKILLed in another
process:

1. deleting an audit (``ood.delete_ood_run``) whose killed redo left ``<folder>.tmp-<hex>`` / ``<folder>.old-<hex>``
   beside its export folder (and, killed between the renames, no export folder at all) left them for ever: no
   record named the folder any more, so neither a later audit nor ``ood.repair_ood_runs`` put them right. The
   delete now puts them right first (the audit's export, the user's result, back in place and kept; only folders
   provably the package's removed), also for the score run of an audit killed before its record;
2. an export killed between making its staged folder and writing the claim in it left an empty
   ``<folder>.tmp-<hex>`` that nothing could tell from a user's: every staged folder's token is now recorded in the
   database before the folder is made, so such an empty folder is removed (an empty one of the user's stays);
3. an export killed while deleting the earlier export (or a staged one) could delete the marker that proves the
   folder the package's before the files it lists: what was left was the user's for ever. The marker and claim
   now go last.

Each test fails without the fix it covers.
"""

import os
import re
import time

import pytest

import ood_core as ood
from forked_python import run_python


@pytest.fixture
def make(audit_images):
    """The audit tests' dataset builder (conftest ``audit_images``)."""
    return audit_images


KW = dict(embeddings_field="vec", near_duplicates=False, progress=False)

_KILLED_EXPORT = """
import builtins, os, re, signal, sys
import fiftyone as fo
import ood_core as ood

where, export = sys.argv[2], os.path.realpath(sys.argv[3])
rename, opened, unlink, remove = os.rename, builtins.open, os.unlink, os.remove

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def killing_rename(src, dst, *a, **k):  # the new export about to go in place, the earlier one already aside
    if where == "between" and dst == export and ".tmp-" in os.fspath(src):
        die()
    return rename(src, dst, *a, **k)

def killing_open(path, mode="r", *a, **k):  # the staged folder made, its claim not written yet
    if where == "claim" and "x" in mode and os.fspath(path).endswith(".fiftyone_ood_staging"):
        die()
    return opened(path, mode, *a, **k)

def deleting(real):
    def killing(path, *a, **k):  # the earlier export's marker just deleted
        real(path, *a, **k)
        if where == "marker" and os.path.basename(os.fspath(path)) == ".fiftyone_ood_export":
            die()
    return killing

os.rename, builtins.open, os.unlink, os.remove = killing_rename, killing_open, deleting(unlink), deleting(remove)
ds = fo.load_dataset(sys.argv[1])
ood.audit(ds, audit_key=sys.argv[4], report_path=sys.argv[5], export_dir=sys.argv[3], overwrite=True,
          embeddings_field="vec", near_duplicates=False, progress=False)
print("done", flush=True)
"""


def _killed_audit(ds, where, export, key, report):
    """``ood.audit`` of ``key`` into ``export`` in another process, SIGKILLed ``where``: "between" (the earlier
    export moved aside, the new one not in place), "claim" (the staged folder made, not claimed), "marker" (the
    earlier export's marker deleted while the earlier export is removed)."""
    out = run_python(_KILLED_EXPORT, ds.name, where, export, key, report, env={"FIFTYONE_OOD_LOCK_LEASE": "1"})
    assert out.returncode == -9 and "done" not in out.stdout, out.stderr[-2000:]
    time.sleep(1.5)  # its locks' leases expire
    ds.reload()


def _beside(export):
    """The folders next to ``export`` named like an export's staged or earlier folder."""
    parent, name = os.path.split(export)
    return sorted(n for n in os.listdir(parent) if re.fullmatch(re.escape(name) + r"\.(tmp|old)-[0-9a-f]{12}", n))


def _tree(folder):
    return sorted((os.path.relpath(os.path.join(r, n), folder), open(os.path.join(r, n), "rb").read())
                  for r, _, names in os.walk(folder) for n in names)


def test_deleting_an_audit_puts_right_what_its_killed_redo_left_and_keeps_its_export(make, tmp_path):
    ds = make()
    export, report = str(tmp_path / "export"), str(tmp_path / "r.html")
    users = tmp_path / "export.tmp-0123456789ab"  # a folder of the user's under such a name: never touched
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    ood.audit(ds, audit_key="first", report_path=report, export_dir=export, **KW)
    earlier = _tree(export)
    _killed_audit(ds, "between", export, "first", report)
    assert not os.path.exists(export) and len(_beside(export)) == 3

    ood.delete_ood_run(ds, "first")
    assert "first" not in ood.list_ood_runs(ds)
    assert _tree(export) == earlier, "the deleted audit's export (the user's result) is back in place and kept"
    assert _beside(export) == [users.name] and (users / "notes.txt").read_text() == "mine"
    # nothing is left for a repair to find, and another audit may now take the folder as a finished export
    ood.repair_ood_runs(ds)
    assert _beside(export) == [users.name]
    ood.audit(ds, audit_key="second", report_path=str(tmp_path / "2.html"), export_dir=export, **KW)
    assert ood.get_ood_run_info(ds, "second")["export_dir"] == export


def test_deleting_the_runs_of_an_audit_killed_before_its_record_removes_its_staged_export(make, tmp_path):
    ds = make()
    export = str(tmp_path / "export")
    before = set(ood.list_ood_runs(ds))
    _killed_audit(ds, "between", export, "lost", str(tmp_path / "r.html"))
    assert len(_beside(export)) == 1 and not os.path.exists(export)
    left = sorted(set(ood.list_ood_runs(ds)) - before)
    assert left, "the killed audit left its score run"
    for key in left:  # the user deletes them by hand instead of ood.repair_ood_runs
        if key in ood.list_ood_runs(ds):
            ood.delete_ood_run(ds, key)
    assert set(ood.list_ood_runs(ds)) == before
    assert _beside(export) == [] and not os.path.exists(export)


def test_a_staged_folder_killed_before_its_claim_is_removed_and_an_empty_one_of_the_users_stays(make, tmp_path):
    ds = make()
    export, report = str(tmp_path / "export"), str(tmp_path / "r.html")
    users = tmp_path / "export.tmp-0123456789ab"  # empty, the user's: nothing tells it from a stranger's
    users.mkdir()
    ood.audit(ds, audit_key="first", report_path=report, export_dir=export, **KW)
    earlier = _tree(export)
    _killed_audit(ds, "claim", export, "first", report)
    staged = [n for n in _beside(export) if n != users.name]
    assert len(staged) == 1 and os.listdir(tmp_path / staged[0]) == []

    ood.repair_ood_runs(ds)
    assert _beside(export) == [users.name] and os.listdir(users) == []
    assert _tree(export) == earlier

    # the next audit into the folder does the same
    _killed_audit(ds, "claim", export, "first", report)
    assert len(_beside(export)) == 2
    ood.audit(ds, audit_key="first", report_path=report, export_dir=export, overwrite=True, **KW)
    assert _beside(export) == [users.name] and ood.get_ood_run_info(ds, "first")["export_dir"] == export


def test_an_export_killed_while_deleting_the_earlier_export_leaves_nothing_after_repair(make, tmp_path):
    ds = make()
    export, report = str(tmp_path / "export"), str(tmp_path / "r.html")
    ood.audit(ds, audit_key="first", report_path=report, export_dir=export, **KW)
    _killed_audit(ds, "marker", export, "first", report)
    assert os.path.isfile(os.path.join(export, ".fiftyone_ood_export"))  # the new export is in place
    assert len(_beside(export)) == 1

    ood.repair_ood_runs(ds)
    assert _beside(export) == []
    assert os.path.isfile(os.path.join(export, ".fiftyone_ood_export"))
