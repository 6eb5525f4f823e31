"""Leftovers of the one-call audit, each reproduced on real images (Fashion-MNIST PNG files), real vectors and the
tests' private MongoDB:

1. an export killed (``kill -9``) between moving the earlier export aside and putting the new one in place, or
   after, left ``<folder>.tmp-<hex>`` / ``<folder>.old-<hex>`` beside the export folder (and, in between, no export
   folder at all) for ever. The next audit into that folder and ``ood.repair_ood_runs`` now put the earlier export
   back and remove only folders provably the package's (a folder of the user's named so is left alone);
2. audit B replaced audit A's report or export (``overwrite=True``) and was killed before A's record stopped naming
   it, or a redo of A was killed after writing its report: inspecting A named a file showing another audit's (or
   the unrecorded redo's) results. Reads now check the file's token against the record's: such an output (or one
   that is gone) is None, with a note;
3. the HTML report escaped class labels, file names and tags but did not isolate them: a label holding a
   right-to-left override (U+202E) turned the rest of its line around. Every such name is now shown in ``<bdi>``.

Each test fails without the fix it covers.
"""

import os
import re
import shutil
import time

import pytest

import ood_core as ood
from forked_python import run_python

RLO = "\u202e"


@pytest.fixture
def make(audit_images):
    """The audit tests' dataset builder (conftest ``audit_images``)."""
    return audit_images


KW = dict(embeddings_field="vec", near_duplicates=False, progress=False)


# --------------------------------------------------------------------------- 1. a killed export's leftovers

_KILLED_EXPORT = """
import os, re, shutil, signal, sys
import fiftyone as fo
import ood_core as ood

where, export = sys.argv[2], os.path.realpath(sys.argv[3])
rename, rmtree = os.rename, shutil.rmtree

def killing_rename(src, dst, *a, **k):  # the new export about to go in place, the earlier one already aside
    if where == "between" and dst == export and ".tmp-" in os.fspath(src):
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(src, dst, *a, **k)

def killing_rmtree(path, *a, **k):  # the new export in place, the earlier one about to be deleted
    if where == "after" and re.search(r"\\.old-[0-9a-f]{12}$", os.fspath(path)):
        os.kill(os.getpid(), signal.SIGKILL)
    return rmtree(path, *a, **k)

os.rename, shutil.rmtree = killing_rename, killing_rmtree
ds = fo.load_dataset(sys.argv[1])
ood.audit(ds, audit_key=sys.argv[4], report_path=sys.argv[5], export_dir=sys.argv[3], overwrite=True,
          embeddings_field="vec", near_duplicates=False, progress=False)
print("done", flush=True)
"""


def _killed_audit(ds, where, export, key, report):
    """``ood.audit`` of ``key`` into ``export`` in another process, killed (SIGKILL) ``where`` ("between": before
    the new export goes in place, the earlier one moved aside; "after": before the earlier one is deleted)."""
    out = run_python(_KILLED_EXPORT, ds.name, where, export, key, report, env={"FIFTYONE_OOD_LOCK_LEASE": "1"})
    assert out.returncode == -9 and "done" not in out.stdout, out.stderr[-2000:]
    time.sleep(1.5)  # its locks' leases expire


def _beside(export):
    """The folders next to ``export`` named like an export's staged or earlier folder."""
    parent, name = os.path.split(export)
    return sorted(n for n in os.listdir(parent) if re.fullmatch(re.escape(name) + r"\.(tmp|old)-[0-9a-f]{12}", n))


def _tree(folder):
    return sorted((os.path.relpath(os.path.join(r, n), folder), open(os.path.join(r, n), "rb").read())
                  for r, _, names in os.walk(folder) for n in names)


def test_an_export_killed_between_or_after_its_renames_is_put_right_by_repair_and_by_the_next_audit(make,
                                                                                                   tmp_path):
    ds = make()
    export, report = str(tmp_path / "export"), str(tmp_path / "r.html")
    users = tmp_path / "export.tmp-0123456789ab"  # a folder of the user's under such a name: never touched
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    ood.audit(ds, audit_key="first", report_path=report, export_dir=export, **KW)
    earlier = _tree(export)

    # killed between the renames: no export folder, the earlier one aside; repair puts it back, removes the staged
    _killed_audit(ds, "between", export, "first", report)
    assert not os.path.exists(export) and len(_beside(export)) == 3
    ood.repair_ood_runs(ds)
    assert _tree(export) == earlier and _beside(export) == [users.name]
    assert (users / "notes.txt").read_text() == "mine"

    # killed between the renames again: the next audit into the folder puts it back, then replaces it as usual
    _killed_audit(ds, "between", export, "first", report)
    ood.audit(ds, audit_key="first", report_path=report, export_dir=export, overwrite=True, **KW)
    assert _beside(export) == [users.name] and os.path.isfile(os.path.join(export, ".fiftyone_ood_export"))
    assert ood.get_ood_run_info(ds, "first")["export_dir"] == export

    # killed after the new export is in place: the earlier one is left aside; repair removes it
    _killed_audit(ds, "after", export, "first", report)
    assert os.path.isdir(export) and len(_beside(export)) == 2
    ood.repair_ood_runs(ds)
    assert _beside(export) == [users.name]

    # an audit killed before its first record: repair finds the folder its run journaled
    other = str(tmp_path / "other")
    _killed_audit(ds, "between", other, "second", str(tmp_path / "2.html"))
    assert len(_beside(other)) == 1
    ood.repair_ood_runs(ds)
    assert _beside(other) == [] and not os.path.exists(other) and "second" not in ood.list_ood_runs(ds)
    assert (users / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- 2. outputs no longer the audit's

_KILLED_AT = """
import os, signal, sys
import fiftyone as fo
import ood_core as ood
from ood_core.fo import audit, audit_owners, audit_report

def kill(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[2] == "disclaim":  # the output published, the other audit's record not updated yet
    audit_owners.disclaim = audit_report.disclaim = kill
else:  # the redo's report written, its record not yet
    audit._record = kill
ds = fo.load_dataset(sys.argv[1])
kw = dict(embeddings_field="vec", near_duplicates=False, progress=False, overwrite=True)
exec(sys.argv[3])
print("done", flush=True)
"""


def _killed(ds, where, call):
    out = run_python(_KILLED_AT, ds.name, where, call, env={"FIFTYONE_OOD_LOCK_LEASE": "1"})
    assert out.returncode == -9 and "done" not in out.stdout, out.stderr[-2000:]
    time.sleep(1.5)
    ds.reload()


def test_an_audit_record_never_names_an_output_a_killed_audit_or_redo_left_in_its_place(make, tmp_path):
    ds = make()
    report, export = str(tmp_path / "r.html"), str(tmp_path / "export")
    ood.audit(ds, audit_key="first", report_path=report, export_dir=export, **KW)
    info = ood.get_ood_run_info(ds, "first")
    assert info["report_path"] == report and info["export_dir"] == export and not info.get("replaced_outputs")

    # B took A's export, killed before A's record stopped naming it: A's export is None, its report still A's
    _killed(ds, "disclaim", f"ood.audit(ds, audit_key='second', report_path={str(tmp_path / '2.html')!r}, "
                            f"export_dir={export!r}, **kw)")
    info = ood.get_ood_run_info(ds, "first")
    assert info["export_dir"] is None and "not this audit's" in info["replaced_outputs"]["export_dir"]
    assert info["report_path"] == report and info["csv_path"] == str(tmp_path / "r_flagged.csv")
    summary = ood.load_ood_results(ds, "first").summary  # its stored summary is checked the same way
    assert summary["export_dir"] is None and summary["report_path"] == report

    # B took A's report, killed before A's record stopped naming it
    _killed(ds, "disclaim", f"ood.audit(ds, audit_key='third', report_path={report!r}, **kw)")
    info = ood.get_ood_run_info(ds, "first")
    assert info["report_path"] is None and info["csv_path"] is None
    assert report in info["replaced_outputs"]["report_path"]
    assert ood.load_ood_results(ds, "first").summary["report_path"] is None
    ood.repair_ood_runs(ds)

    # a redo of an audit killed after writing its report, before its record: the report shows the redo's results
    ood.audit(ds, audit_key="fourth", report_path=str(tmp_path / "4.html"), **KW)
    assert ood.get_ood_run_info(ds, "fourth")["report_path"] == str(tmp_path / "4.html")
    _killed(ds, "record", f"ood.audit(ds, audit_key='fourth', report_path={str(tmp_path / '4.html')!r}, **kw)")
    info = ood.get_ood_run_info(ds, "fourth")
    assert info["report_path"] is None and "4.html" in info["replaced_outputs"]["report_path"]

    # a report that is gone is not named either
    ood.audit(ds, audit_key="fifth", report_path=str(tmp_path / "5.html"), **KW)
    os.remove(tmp_path / "5.html")
    info = ood.get_ood_run_info(ds, "fifth")
    assert info["report_path"] is None and "no longer exists" in info["replaced_outputs"]["report_path"]


# --------------------------------------------------------------------------- 3. names isolated in the report


def _outside_bdi(page):
    """The page's text with every ``<bdi>...</bdi>`` element cut out, and every span between Unicode's isolate
    marks U+2068 ... U+2069 (an attribute, e.g. an image's ``alt``, cannot hold an element)."""
    return re.sub("\u2068[^\u2068\u2069]*\u2069", "", re.sub(r"<bdi>.*?</bdi>", "", page, flags=re.S))


def test_a_right_to_left_override_in_a_label_or_file_name_stays_inside_its_name_in_the_report(make, fashion_files,
                                                                                               tmp_path):
    files, _ = fashion_files
    paths = []
    for i in range(30):  # every fifth file name holds the override, like the labels of every third sample
        src = files[(7 * i) % len(files)]
        dst = tmp_path / "media" / (f"{i}{RLO}gnp.png" if i % 5 == 0 else f"{i}.png")
        dst.parent.mkdir(exist_ok=True)
        shutil.copyfile(src, dst)
        paths.append(str(dst))
    ds = make(label=f"cat{RLO}dog", paths=paths)
    report = str(tmp_path / "r.html")
    ood.audit(ds, report_path=report, label_field="ground_truth", reference="trusted", num_worst=30, **KW)
    page = open(report, encoding="utf-8").read()
    body = page[page.index("<body>"):]
    assert body.count(RLO) >= 2 and f"cat{RLO}dog" in body  # the labels and file names are shown
    assert RLO not in _outside_bdi(body), "a direction override outside a <bdi> turns the rest of its line around"
    assert re.search(rf"label: <bdi>cat{RLO}dog</bdi>", body) and re.search(rf"<bdi>\d+{RLO}gnp\.png</bdi> \(", body)
