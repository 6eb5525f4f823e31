"""Files the package publishes outside the dataset are never left stuck by a SIGKILL, reproduced with real processes
killed with SIGKILL, real files, real plotly figures, real images (Fashion-MNIST PNGs) and the tests' private MongoDB.

1. The first audit into a report path, killed while publishing its report (before its record exists), left the
   staging folder ``.r.html.tmp-*/`` for ever: ``ood.repair_ood_runs`` did not know the path. Now the path is
   journaled on the audit's score run before publishing, and repair cleans it.
2. ``ood.save_figure`` killed half-way left ``<name>.old-<hex>`` (the user's earlier figure, no figure in place) and
   ``.<name>.tmp-*/`` for ever. Now the next save into the folder puts the earlier figure back and removes what is
   provably save_figure's; files of the user's under those names stay.
3. A file partly written when killed carries no mark and its staging folder was never removed. Now every staging
   folder carries a claim written before the file, so it is provably the package's and goes.

Each test fails without the fix.
"""

import os
import time

import pytest

import ood_core as ood
from fault_helpers import held_elsewhere, published_leftovers, read_bytes
from forked_python import run_python

KW = dict(embeddings_field="vec", near_duplicates=False, progress=False)


@pytest.fixture
def make(audit_images):
    """The audit tests' dataset builder (conftest ``audit_images``)."""
    return audit_images


_KILL_AT_LINK = """
import os, signal, sys
target = os.path.abspath(sys.argv[1])
link = os.link

def killing_link(src, dst, *a, **k):  # the new file staged (an earlier one renamed aside), about to be linked in
    if os.path.abspath(os.fspath(dst)) == target and ".tmp-" in os.fspath(src):
        os.kill(os.getpid(), signal.SIGKILL)
    return link(src, dst, *a, **k)

os.link = killing_link
"""

_KILL_IN_WRITE = """
import builtins, os, signal, sys
target = os.path.basename(sys.argv[1])
real_open = builtins.open

class Dying:  # a file whose write dies half-way: a few bytes on disk, then SIGKILL
    def __init__(self, f):
        self.f = f
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False
    def write(self, data):
        self.f.write(data[:7])
        self.f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

def dying_open(path, mode="r", *a, **k):
    f = real_open(path, mode, *a, **k)
    if "x" in mode and os.path.basename(os.fspath(path)) == target:
        return Dying(f)
    return f

builtins.open = dying_open
"""


def _killed(prelude, target, body, *args):
    """Run ``prelude`` (killing the process at ``target``) then ``body`` in another process; it must die of SIGKILL."""
    out = run_python(prelude + body, target, *args, env={"FIFTYONE_OOD_LOCK_LEASE": "1"})
    assert out.returncode == -9 and "done" not in out.stdout, out.stderr[-2000:]
    time.sleep(1.5)  # its locks' leases expire


_AUDIT = """
import fiftyone as fo
import ood_core as ood
ds = fo.load_dataset(sys.argv[2])
ood.audit(ds, audit_key="a", report_path=sys.argv[3], embeddings_field="vec", near_duplicates=False, progress=False)
print("done", flush=True)
"""

_FIGURE = """
import ood_core as ood
fig = ood.plot_score_histogram([0.1, 0.5, 0.9, 0.3], [False, False, True, False], title=sys.argv[2])
ood.save_figure(fig, sys.argv[3])
print("done", flush=True)
"""


# --------------------------------------------------------------------------- 1. the first audit into a report path


def _first_audit_killed(make, tmp_path, kill_at):
    """A persistent audit dataset whose first audit into ``tmp_path/r.html`` was killed at ``kill_at``:
    ``(dataset, report path)``."""
    ds = make()
    ds.persistent = True
    report = str(tmp_path / "r.html")
    _killed(kill_at, report, _AUDIT, ds.name, report)
    ds.reload()
    return ds, report


def test_repair_cleans_the_staging_of_a_first_audit_killed_while_publishing_its_report(make, tmp_path):
    ds, report = _first_audit_killed(make, tmp_path, _KILL_AT_LINK)
    assert not os.path.exists(report) and len(published_leftovers(str(tmp_path), "r.html")) == 1  # the staged report
    assert ood.list_ood_runs(ds, kind="audit") == [], "killed before its record"
    ood.repair_ood_runs(ds)
    assert published_leftovers(str(tmp_path), "r.html") == [], "the journaled path's leftovers are gone"
    ood.audit(ds, audit_key="a", report_path=report, **KW)  # and the path is free
    assert os.path.isfile(report) and published_leftovers(str(tmp_path), "r.html") == []


# --------------------------------------------------------------------------- 2. save_figure killed half-way


def _figure_killed_between_the_renames(tmp_path):
    """``fig.html`` saved by ``save_figure(.., 'fig.png')`` (no kaleido: HTML only, published beside the named
    path), then a second save killed after the earlier HTML was moved aside; returns the earlier HTML's bytes."""
    fig = ood.plot_score_histogram([0.1, 0.5, 0.9, 0.3], [False, False, True, False], title="first")
    ood.save_figure(fig, str(tmp_path / "fig.png"))
    earlier = read_bytes(str(tmp_path / "fig.html"))
    _killed(_KILL_AT_LINK, str(tmp_path / "fig.html"), _FIGURE, "second", str(tmp_path / "fig.png"))
    left = published_leftovers(str(tmp_path), "fig.html")
    assert not os.path.exists(tmp_path / "fig.html") and len(left) == 2, "the earlier figure aside, the new staged"
    return earlier


def test_a_save_after_a_killed_one_puts_the_earlier_figure_back_and_removes_the_leftovers(tmp_path):
    earlier = _figure_killed_between_the_renames(tmp_path)
    from ood_core.plots import recover_figures

    done = recover_figures(str(tmp_path / "fig.html"))
    assert read_bytes(str(tmp_path / "fig.html")) == earlier, "the user's earlier figure is back in place"
    assert published_leftovers(str(tmp_path), "fig.html") == [] and done["restored"] and done["removed"]
    fig = ood.plot_score_histogram([0.2, 0.4], [False, True], title="third")
    assert ood.save_figure(fig, str(tmp_path / "fig.png"))["html"] == str(tmp_path / "fig.html")
    assert b"third" in read_bytes(str(tmp_path / "fig.html")) and published_leftovers(str(tmp_path), "fig.html") == []


def test_save_figure_itself_recovers_and_never_touches_a_users_files_of_those_names(tmp_path):
    earlier = _figure_killed_between_the_renames(tmp_path)
    users_old = tmp_path / "fig.html.old-0123456789ab"  # newer, no mark: never put in place, never removed
    users_old.write_text("<html>my notes</html>")
    os.utime(users_old, (time.time() + 60, time.time() + 60))
    users_tmp = tmp_path / ".fig.html.tmp-mine1234"  # the user's folder under a staging name
    users_tmp.mkdir()
    (users_tmp / "fig.html").write_text("<html>mine</html>")
    ood.save_figure(ood.plot_score_histogram([0.2, 0.4], [False, True], title="third"), str(tmp_path / "fig.png"))
    assert b"third" in read_bytes(str(tmp_path / "fig.html")) and read_bytes(str(tmp_path / "fig.html")) != earlier
    assert published_leftovers(str(tmp_path), "fig.html") == sorted([users_old.name, users_tmp.name])
    assert users_old.read_text() == "<html>my notes</html>"
    assert (users_tmp / "fig.html").read_text() == "<html>mine</html>"


def test_a_save_killed_while_writing_its_named_file_leaves_nothing_behind_the_next_save(tmp_path):
    """3. the staged HTML half-written (7 bytes: not even the mark) is provably ours by its folder's claim."""
    path = str(tmp_path / "fig.html")
    ood.save_figure(ood.plot_score_histogram([0.1, 0.9], [False, True], title="first"), path)
    earlier = read_bytes(path)
    _killed(_KILL_IN_WRITE, path, _FIGURE, "second", path)
    staged = published_leftovers(str(tmp_path), "fig.html")
    assert len(staged) == 1 and read_bytes(path) == earlier
    assert len(read_bytes(str(tmp_path / staged[0] / "fig.html"))) == 7
    ood.save_figure(ood.plot_score_histogram([0.2, 0.4], [False, True], title="third"), path)
    assert published_leftovers(str(tmp_path), "fig.html") == [] and b"third" in read_bytes(path)


def test_a_report_half_written_when_killed_is_removed_by_the_next_audit(make, tmp_path):
    """3. for the report too: a first audit killed while writing its staged report."""
    ds, report = _first_audit_killed(make, tmp_path, _KILL_IN_WRITE)
    staged = published_leftovers(str(tmp_path), "r.html")
    assert len(staged) == 1 and len(read_bytes(str(tmp_path / staged[0] / "r.html"))) == 7
    ood.repair_ood_runs(ds)
    assert published_leftovers(str(tmp_path), "r.html") == []


def test_saves_into_one_folder_take_turns(tmp_path):
    """Leftovers are judged dead only while the folder's lock is held: a save waits for another one to finish."""
    from ood_core.publish import folder_lock

    with held_elsewhere(folder_lock(str(tmp_path), "busy"), 3) as released:
        ood.save_figure(ood.plot_score_histogram([0.2, 0.4], [False, True]), str(tmp_path / "fig.html"))
    assert os.stat(tmp_path / "fig.html").st_mtime >= released["at"] - 0.05, "saved after the other let go"
