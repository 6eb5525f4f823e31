"""A report publish SIGKILLed half-way never leaves an audit stuck, reproduced on real images (Fashion-MNIST PNG
files), real files, the tests' private MongoDB and audits killed with SIGKILL in another process.

An audit redone into its report path, killed after the earlier report was renamed aside (``r.html.old-<hex>``) but
before the new one was linked in, left no ``r.html``, the earlier report aside, the new one in a staging folder
``.r.html.tmp-<random>/`` and the CSV. The audit's record then named no report ("no longer exists"),
``ood.repair_ood_runs`` changed nothing, ``ood.delete_ood_run`` left the files for ever, and a redo with
``overwrite=True`` was refused (the CSV, with no report vouching for it, was judged the user's). Now the earlier
report goes back in place (it carries the audit's mark) and the staging folder, provably the package's, goes:
by the next audit's call check, by ``repair_ood_runs`` and by deleting the audit. Files and folders of the user's
under such names are never touched.

Each test fails without the fix.
"""

import os
import time

import numpy as np
import pytest

import ood_core as ood
from fault_helpers import held_elsewhere, published_leftovers, read_bytes
from forked_python import run_python


@pytest.fixture
def make(audit_images):
    """The audit tests' dataset builder (conftest ``audit_images``)."""
    return audit_images


KW = dict(embeddings_field="vec", near_duplicates=False, progress=False)

_KILLED_PUBLISH = """
import os, signal, sys
import fiftyone as fo
import ood_core as ood

target = os.path.abspath(sys.argv[2])
link = os.link

def killing_link(src, dst, *a, **k):  # the earlier file renamed aside, the new one about to be linked in
    if os.path.abspath(os.fspath(dst)) == target and ".tmp-" in os.fspath(src):
        os.kill(os.getpid(), signal.SIGKILL)
    return link(src, dst, *a, **k)

os.link = killing_link
ds = fo.load_dataset(sys.argv[1])
ood.audit(ds, audit_key=sys.argv[3], report_path=sys.argv[4], overwrite=True, embeddings_field="vec",
          near_duplicates=False, progress=False)
print("done", flush=True)
"""


def _killed_publish(ds, target, key, report):
    """``ood.audit`` of ``key`` into ``report`` in another process, SIGKILLed as it links the new ``target`` (the
    report, or its CSV) in place, the earlier one renamed aside."""
    ds.persistent = True
    out = run_python(_KILLED_PUBLISH, ds.name, target, key, report, env={"FIFTYONE_OOD_LOCK_LEASE": "1"})
    assert out.returncode == -9 and "done" not in out.stdout, out.stderr[-2000:]
    time.sleep(1.5)  # its locks' leases expire
    ds.reload()


def _killed_redo(make, tmp_path):
    """A dataset whose audit 'a' wrote ``r.html``, and a redo of it killed between the renames: returns
    ``(ds, report, the earlier report's bytes, the earlier CSV's bytes)``."""
    ds = make()
    report = str(tmp_path / "r.html")
    ood.audit(ds, audit_key="a", report_path=report, **KW)
    earlier, earlier_csv = read_bytes(report), read_bytes(str(tmp_path / "r_flagged.csv"))
    _killed_publish(ds, report, "a", report)
    # what the colleague saw: no report, the earlier one aside, the new one staged, the CSV
    assert not os.path.exists(report) and os.path.exists(tmp_path / "r_flagged.csv")
    left = published_leftovers(str(tmp_path), "r.html")
    assert len(left) == 2 and read_bytes(str(tmp_path / [n for n in left if ".old-" in n][0])) == earlier
    assert ood.get_ood_run_info(ds, "a")["report_path"] is None
    return ds, report, earlier, earlier_csv


def test_repair_puts_back_the_report_a_killed_redo_moved_aside_and_removes_its_staging(make, tmp_path):
    ds, report, earlier, earlier_csv = _killed_redo(make, tmp_path)
    ood.repair_ood_runs(ds)
    assert read_bytes(report) == earlier and read_bytes(str(tmp_path / "r_flagged.csv")) == earlier_csv
    assert published_leftovers(str(tmp_path), "r.html") == []
    assert ood.get_ood_run_info(ds, "a")["report_path"] == report, "the record names its report again"
    ood.audit(ds, audit_key="a", report_path=report, overwrite=True, **KW)  # and a redo goes through
    assert ood.get_ood_run_info(ds, "a")["report_path"] == report and read_bytes(report) != earlier
    assert published_leftovers(str(tmp_path), "r.html") == []


def test_a_redo_into_the_path_of_a_killed_publish_goes_through(make, tmp_path):
    ds, report, earlier, _ = _killed_redo(make, tmp_path)
    summary = ood.audit(ds, audit_key="a", report_path=report, overwrite=True, **KW)
    assert summary["report_path"] == report and os.path.isfile(report) and read_bytes(report) != earlier
    assert published_leftovers(str(tmp_path), "r.html") == [] and published_leftovers(str(tmp_path), "r_flagged.csv") == []
    assert ood.get_ood_run_info(ds, "a")["report_path"] == report


def test_deleting_the_audit_puts_its_report_back_and_removes_the_staging(make, tmp_path):
    ds, report, earlier, _ = _killed_redo(make, tmp_path)
    ood.delete_ood_run(ds, "a")
    assert read_bytes(report) == earlier, "the deleted audit's report (the user's result) is back in place"
    assert published_leftovers(str(tmp_path), "r.html") == []


def test_a_csv_publish_killed_between_the_renames_leaves_the_csv_its_report_was_written_with(make, tmp_path):
    ds = make()
    report, csv_path = str(tmp_path / "r.html"), str(tmp_path / "r_flagged.csv")
    ood.audit(ds, audit_key="a", report_path=report, **KW)
    ds.set_values("vec", list(np.random.default_rng(7).normal(size=(len(ds), 8)).astype(np.float32)))
    _killed_publish(ds, csv_path, "a", report)
    assert os.path.isfile(report) and not os.path.exists(csv_path) and len(published_leftovers(str(tmp_path), "r_flagged.csv")) == 2
    staged = [n for n in published_leftovers(str(tmp_path), "r_flagged.csv") if ".tmp-" in n][0]
    new_csv = read_bytes(os.path.join(tmp_path, staged, "r_flagged.csv"))
    ood.repair_ood_runs(ds)
    assert read_bytes(csv_path) == new_csv, "the CSV the report in place vouches for first (written with it)"
    assert published_leftovers(str(tmp_path), "r_flagged.csv") == [] and published_leftovers(str(tmp_path), "r.html") == []
    ood.audit(ds, audit_key="a", report_path=report, overwrite=True, **KW)
    assert ood.get_ood_run_info(ds, "a")["report_path"] == report


def test_files_of_the_users_under_the_leftover_names_are_never_touched(make, tmp_path):
    ds, report, earlier, _ = _killed_redo(make, tmp_path)
    users_old = tmp_path / "r.html.old-0123456789ab"  # newer than the audit's, no mark: never put in place
    users_old.write_text("<html>my notes</html>")
    users_tmp = tmp_path / ".r.html.tmp-mine1234"  # a folder of the user's under a staging name
    users_tmp.mkdir()
    (users_tmp / "r.html").write_text("<html>mine</html>")
    edited = tmp_path / "r.html.old-ba9876543210"  # the audit's report, edited since: no longer provably ours
    edited.write_bytes(earlier.replace(b"</html>", b"<!-- my note --></html>"))
    os.utime(edited, (time.time() + 60, time.time() + 60))
    ood.repair_ood_runs(ds)
    assert read_bytes(report) == earlier
    assert users_old.read_text() == "<html>my notes</html>"
    assert (users_tmp / "r.html").read_text() == "<html>mine</html>"
    assert edited.exists()
    assert published_leftovers(str(tmp_path), "r.html") == sorted([users_tmp.name, edited.name, users_old.name])


def test_recovery_leaves_the_files_of_a_publish_that_holds_the_lock(make, tmp_path):
    from ood_core.fo.report_leftovers import recover_report, report_lock

    ds, report, earlier, _ = _killed_redo(make, tmp_path)
    left = published_leftovers(str(tmp_path), "r.html")
    with report_lock(report):  # another thread holding it: as a live publish in another process
        import threading

        result = {}
        worker = threading.Thread(target=lambda: result.update(recover_report(report)))
        worker.start()
        worker.join()
        assert result == {"restored": [], "removed": []} and published_leftovers(str(tmp_path), "r.html") == left
    assert recover_report(report)["restored"] and read_bytes(report) == earlier


def test_report_publishes_into_one_path_take_turns(make, tmp_path):
    from ood_core.fo.report_leftovers import report_lock

    ds = make()
    report = str(tmp_path / "r.html")
    with held_elsewhere(report_lock(report), 10) as released:
        ood.audit(ds, audit_key="a", report_path=report, **KW)
    assert os.stat(report).st_mtime >= released["at"] - 0.05, "the report was published after the other let go"
