"""Data-safety gaps of ``ood.audit`` a probe found, each reproduced on the tests' private MongoDB:

1. a saved view the user saved under the audit's view name was deleted with the audit and replaced by a redo
   (a name the audit's record listed counted as the audit's own);
2. the report, its CSV and ``save_figure`` wrote into the predictable temporary name ``<path>.tmp-<pid>``:
   a user's file of that name was deleted, a link of that name made the write land on the link's target;
3. any HTML whose head held the report's title, any CSV with the report's header line, counted as the audit's
   own and was replaced (also one the user edited after the audit wrote it);
4. an export folder that is the report's folder was refused only at the export step, after the runs were written;
5. the upfront check left out the fields written beside the scores (``<ood_field>_pvalue``,
   ``<label_issue_field>_suggestion``): a user's field of that name was found only after embeddings were written;
6. an export folder holding only (empty) folders of the user's counted as empty and they were deleted.

Each test fails without the fix it covers.
"""

import csv
import os

import numpy as np
import pytest

import ood_core as ood
from fault_helpers import Crash
from ood_core.errors import OODInputError

PID = os.getpid()


@pytest.fixture
def probe(dataset_factory):
    """30 samples (no media) with random 8-d vectors 'vec'; the first 10 tagged 'trusted'."""
    ds = dataset_factory([f"/tmp/probe_{i}.png" for i in range(30)],
                         tags=[["trusted"] if i < 10 else [] for i in range(30)])
    ds.set_values("vec", list(np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)))
    return ds


def _audit(ds, tmp_path, **kwargs):
    kwargs.setdefault("report_path", str(tmp_path / "r.html"))
    kwargs.setdefault("label_field", None)
    return ood.audit(ds, embeddings_field="vec", reference="trusted", near_duplicates=False, **kwargs)


def _view_state(ds, name):
    return len(ds.load_saved_view(name)), ds.get_saved_view_info(name)["description"]


# --------------------------------------------------------------------------- 1. saved views


def test_a_users_saved_view_under_the_audits_name_is_neither_replaced_nor_deleted(probe, tmp_path):
    ds = probe
    out = _audit(ds, tmp_path)
    name = out["saved_views"][0]
    assert name == "ood_audit-ood"
    ds.delete_saved_view(name)
    ds.save_view(name, ds.limit(3), description="mine")
    runs_before = sorted(ood.list_ood_runs(ds))
    with pytest.raises(OODInputError, match=rf"saved views \['{name}'\].*not as the audit saved it.*Rename those "
                                            r"views, or pass another audit_key"):
        _audit(ds, tmp_path, overwrite=True)
    assert _view_state(ds, name) == (3, "mine") and sorted(ood.list_ood_runs(ds)) == runs_before
    ood.delete_ood_run(ds, "ood_audit")  # the audit goes; the user's view of its name stays
    assert "ood_audit" not in ood.list_ood_runs(ds) and _view_state(ds, name) == (3, "mine")


def test_an_audits_saved_view_the_user_changed_is_the_users(probe, tmp_path):
    ds = probe
    name = _audit(ds, tmp_path)["saved_views"][0]
    description = ds.get_saved_view_info(name)["description"]
    narrowed = ds.load_saved_view(name).limit(1)  # the user narrows the audit's view, keeping its description
    ds.save_view(name, narrowed, description=description, overwrite=True)
    with pytest.raises(OODInputError, match=rf"saved views \['{name}'\]"):
        _audit(ds, tmp_path, overwrite=True)
    ood.delete_ood_run(ds, "ood_audit")
    assert _view_state(ds, name) == (len(narrowed), description)


def test_the_audits_own_saved_views_are_still_replaced_and_deleted(probe, tmp_path):
    ds = probe
    name = _audit(ds, tmp_path)["saved_views"][0]
    ds.load_saved_view(name)  # as the App does: loading a view must not make it look changed
    ds.update_saved_view_info(name, {"color": "#FF6D04"})  # nor does its colour
    out = _audit(ds, tmp_path, overwrite=True)
    assert out["saved_views"] == [name] and ds.get_saved_view_info(name)["description"].startswith("fiftyone-ood")
    ood.delete_ood_run(ds, "ood_audit")
    assert not ds.has_saved_view(name)


def test_saved_views_of_an_audit_recorded_without_their_identity_are_kept(probe, tmp_path):
    """An audit recorded by an earlier version lists its views by name only: they may be the user's by now."""
    from ood_core.fo import runs

    ds = probe
    name = _audit(ds, tmp_path)["saved_views"][0]
    runs.update_run(ds, "ood_audit", saved_view_marks=None)  # as an earlier version recorded it
    with pytest.raises(OODInputError, match=rf"saved views \['{name}'\].*earlier version.*delete_saved_view"):
        _audit(ds, tmp_path, overwrite=True)
    ood.delete_ood_run(ds, "ood_audit")
    assert ds.has_saved_view(name)


# --------------------------------------------------------------------------- 2. temporary files


def test_the_report_never_deletes_a_users_file_of_its_temporary_name_nor_follows_a_link(probe, tmp_path):
    ds = probe
    mine = tmp_path / f"r.html.tmp-{PID}"
    mine.write_text("my own file")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / f"r_flagged.csv.tmp-{PID}"
    os.symlink(victim, link)
    out = _audit(ds, tmp_path)
    assert mine.read_text() == "my own file" and victim.read_text() == "keep me"
    assert os.path.islink(link) and os.readlink(link) == str(victim)
    assert os.path.isfile(out["report_path"]) and os.path.isfile(out["csv_path"])
    assert not os.path.islink(out["report_path"]) and not os.path.islink(out["csv_path"])
    assert sorted(os.listdir(tmp_path)) == sorted(["r.html", "r_flagged.csv", mine.name, link.name, victim.name])


def test_save_figure_never_deletes_a_users_file_of_its_temporary_name_nor_follows_a_link(tmp_path):
    fig = ood.plot_score_histogram([0.1, 0.5, 0.9, 0.3], [False, False, True, False])
    mine = tmp_path / f"fig.html.tmp-{PID}"
    mine.write_text("my own file")
    ood.save_figure(fig, str(tmp_path / "fig.html"))
    assert mine.read_text() == "my own file"
    mine.unlink()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, tmp_path / f"fig.html.tmp-{PID}")
    ood.save_figure(fig, str(tmp_path / "fig.html"))
    assert victim.read_text() == "keep me" and os.path.islink(tmp_path / f"fig.html.tmp-{PID}")
    assert "plotly" in (tmp_path / "fig.html").read_text()


def test_temporary_files_are_private_and_removed(tmp_path):
    from ood_core.publish import temporary_beside

    target = tmp_path / "x.html"
    with temporary_beside(str(target)) as tmp:
        folder = os.path.dirname(tmp)
        assert os.path.dirname(folder) == str(tmp_path) and not os.path.lexists(tmp)
        assert os.stat(folder).st_mode & 0o777 == 0o700  # made for this call, for nobody else
        with open(tmp, "w") as f:
            f.write("x")
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError):
        with temporary_beside(str(target)) as tmp:
            open(tmp, "w").close()
            raise RuntimeError("write failed")
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- 3. ownership of the report and CSV


def test_a_users_html_with_the_reports_title_is_never_replaced(probe, tmp_path):
    notes = "<html><head><title>fiftyone-ood audit: my notes</title></head><body>mine</body></html>"
    (tmp_path / "r.html").write_text(notes)
    with pytest.raises(OODInputError, match=r"r.html' exists and is not a fiftyone-ood audit report .*Pass "
                                            r"another report_path"):
        _audit(probe, tmp_path)
    assert (tmp_path / "r.html").read_text() == notes and ood.list_ood_runs(probe) == []


def test_a_users_csv_with_the_reports_header_is_never_replaced(probe, tmp_path):
    from ood_core.fo.audit_report import CSV_HEADER

    table = ",".join(CSV_HEADER) + "\nmy,own,rows,1,x\n"
    (tmp_path / "r_flagged.csv").write_text(table)
    with pytest.raises(OODInputError, match=r"r_flagged.csv' exists and is not a fiftyone-ood audit report"):
        _audit(probe, tmp_path)
    assert (tmp_path / "r_flagged.csv").read_text() == table and ood.list_ood_runs(probe) == []


@pytest.mark.parametrize("edited", ["r.html", "r_flagged.csv"])
def test_a_report_or_csv_the_user_edited_after_the_audit_is_the_users(probe, tmp_path, edited):
    ds = probe
    _audit(ds, tmp_path)
    path = tmp_path / edited
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write("<!-- my note -->\n" if edited.endswith(".html") else "mine,/x.png,note,0,\r\n")
    kept = path.read_bytes()
    with pytest.raises(OODInputError, match=rf"{edited}' exists and is not a fiftyone-ood audit report .*changed"):
        _audit(ds, tmp_path, overwrite=True)
    assert path.read_bytes() == kept


def test_the_audits_csv_stays_a_plain_csv_and_its_files_are_replaced_on_a_redo(probe, tmp_path):
    import pandas as pd

    from ood_core.fo.audit_report import CSV_HEADER

    ds = probe
    out = _audit(ds, tmp_path)
    with open(out["csv_path"], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == CSV_HEADER and len(rows) - 1 == out["num_csv_rows"] > 0
    table = pd.read_csv(out["csv_path"])
    assert list(table.columns) == CSV_HEADER and len(table) == out["num_csv_rows"]
    inodes = [os.stat(p).st_ino for p in (out["report_path"], out["csv_path"])]
    again = _audit(ds, tmp_path, overwrite=True)  # the audit's own files, unchanged since: replaced
    assert [os.stat(p).st_ino for p in (again["report_path"], again["csv_path"])] != inodes
    assert sorted(os.listdir(tmp_path)) == ["r.html", "r_flagged.csv"]


def test_a_crash_between_the_report_and_its_csv_leaves_both_the_audits(probe, tmp_path, monkeypatch):
    """The report vouches for its CSV: one interrupted after the report was published still vouches for the
    earlier CSV, so the next audit replaces both."""
    import ood_core.fo.audit_report as audit_report

    ds = probe
    _audit(ds, tmp_path)
    real = audit_report.publish_file

    def crash_at_csv(tmp, path, *args):
        if path.endswith(".csv"):
            raise Crash("csv")
        return real(tmp, path, *args)

    monkeypatch.setattr(audit_report, "publish_file", crash_at_csv)
    with pytest.raises(Crash):
        _audit(ds, tmp_path, overwrite=True)
    monkeypatch.undo()
    audit_report.check_report_files(str(tmp_path / "r.html"))  # both still the audit's own
    ood.repair_ood_runs(ds)
    _audit(ds, tmp_path, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["r.html", "r_flagged.csv"]


# --------------------------------------------------------------------------- 4. export folder = report folder


@pytest.mark.parametrize("where", ["same", "inside"])
def test_an_export_folder_that_would_receive_the_report_is_refused_before_anything_is_written(probe, tmp_path,
                                                                                              where):
    out = tmp_path / "out"
    report = out / "r.html" if where == "same" else out / "reports" / "r.html"
    with pytest.raises(OODInputError, match=r"export_dir=.*out.* would hold the report .*r.html.*Pass an "
                                            r"export_dir outside the report's folder"):
        _audit(probe, tmp_path, report_path=str(report), export_dir=str(out))
    assert ood.list_ood_runs(probe) == [] and not os.path.exists(report)
    assert not os.path.exists(str(report)[:-5] + "_flagged.csv")


# --------------------------------------------------------------------------- 5. companion fields, up front


@pytest.mark.parametrize("companion", ["audit_ood_pvalue", "audit_label_issue_suggestion"])
def test_a_users_field_beside_the_scores_is_refused_before_embeddings_are_written(dataset_factory, fashion_files,
                                                                                  session_extractor, tmp_path,
                                                                                  companion):
    paths, names = fashion_files
    idx = [c * 20 + j for c in range(4) for j in range(4)]
    ds = dataset_factory([paths[i] for i in idx], [names[i] for i in idx],
                         [["trusted"] if j < 2 else [] for j in [i % 20 for i in idx]])
    ds.set_values(companion, [f"my note {i}" for i in range(len(ds))])
    with pytest.raises(OODInputError, match=rf"{companion}"):
        ood.audit(ds, report_path=str(tmp_path / "r.html"), near_duplicates=False)
    assert ood.list_ood_runs(ds) == [] and not ds.has_field("ood_embeddings")
    assert ds.values(companion) == [f"my note {i}" for i in range(len(ds))]
    assert not os.path.exists(tmp_path / "r.html")


def test_the_audits_upfront_check_names_the_fields_written_beside_the_scores(probe):
    from ood_core.fo.audit import check_outputs

    probe.set_values("k_ood_pvalue", [1.0] * len(probe))
    with pytest.raises(OODInputError, match="k_ood_pvalue"):
        check_outputs(probe, "k", False)


# --------------------------------------------------------------------------- 6. folders of the user's


def test_an_export_folder_holding_only_the_users_folders_is_not_empty(probe, tmp_path):
    from ood_core.fo.audit_export import check_export_dir

    out = tmp_path / "out"
    (out / "my_structure" / "a").mkdir(parents=True)
    with pytest.raises(OODInputError, match=r"export_dir=.*out.* already holds files that fiftyone-ood did not "
                                            r"export \(e.g. 'my_structure"):
        check_export_dir(str(out))
    with pytest.raises(OODInputError, match=r"already holds files that fiftyone-ood did not export"):
        _audit(probe, tmp_path, export_dir=str(out))
    assert ood.list_ood_runs(probe) == [] and os.path.isdir(out / "my_structure" / "a")
    assert os.listdir(out) == ["my_structure"]


def test_a_view_the_user_saves_before_a_crashed_audit_rolls_forward_is_theirs(dataset_factory):
    """The audit's saved views are saved (and its old ones deleted) when its commit rolls forward, maybe by a later
    call after a crash: a view saved by the user under the name meanwhile is left as it is."""
    from ood_core.fo import audit_views, followups

    ds = dataset_factory([f"/tmp/roll_{i}.png" for i in range(6)])
    op = followups.save_view("ood_audit-ood", ds.limit(2), "fiftyone-ood audit 'ood_audit': worst first")
    op["mark"] = audit_views.planned_view_mark(ds, op)
    ds.save_view("ood_audit-ood", ds.limit(4), description="mine")  # saved after the audit planned its step
    followups.apply(ds, [op])
    assert len(ds.load_saved_view("ood_audit-ood")) == 4
    ds.delete_saved_view("ood_audit-ood")
    followups.apply(ds, [op])  # no view there any more: the audit's is saved, and doing it again changes nothing
    mark = audit_views.saved_view_mark(ds, "ood_audit-ood")
    assert mark == op["mark"] and len(ds.load_saved_view("ood_audit-ood")) == 2
    followups.apply(ds, [op])
    assert audit_views.saved_view_mark(ds, "ood_audit-ood") == mark
    # deleting: only the view as the audit saved it
    delete = followups.delete_saved_view("ood_audit-ood", mark)
    ds.save_view("ood_audit-ood", ds.limit(3), description="mine now", overwrite=True)
    followups.apply(ds, [delete])
    assert ds.has_saved_view("ood_audit-ood") and len(ds.load_saved_view("ood_audit-ood")) == 3
    ds.save_view("ood_audit-ood", ds.limit(2), description=op["description"], overwrite=True)  # the audit's again
    followups.apply(ds, [delete])
    assert not ds.has_saved_view("ood_audit-ood")


def test_deleting_a_run_leaves_a_users_view_under_the_audits_name(probe, tmp_path):
    """A run an audit lists is deleted: the audit forgets it and deletes its own saved views that sort by the
    deleted field, not a view the user saved under such a name."""
    from fiftyone import ViewField as F

    ds = probe
    out = _audit(ds, tmp_path)
    name = out["saved_views"][0]
    ds.save_view(name, ds.sort_by(F("audit_ood"), reverse=True).limit(3), description="mine", overwrite=True)
    ood.delete_ood_run(ds, "audit_ood_flag")
    ood.delete_ood_run(ds, "audit_ood")
    assert ds.has_saved_view(name) and ds.get_saved_view_info(name)["description"] == "mine"


def test_a_label_field_with_one_usable_label_is_refused_before_the_audit_writes(probe, tmp_path):
    """One labelled sample (or one with an embedding): the wrong-label step cannot weigh it, so the audit refuses
    the label field before its OOD step writes runs, fields and tags (they were left as an interrupted audit);
    chosen automatically, such a field is left out as a field without labels is."""
    import fiftyone as fo

    ds = probe
    ds.limit(1).set_values("gt", [fo.Classification(label="cat")])
    ds.skip(1).limit(1).set_values("gt", [fo.Classification(label="dog")])  # labelled, but without an embedding
    ds.skip(1).limit(1).set_values("vec", [None])
    before = (ds.list_runs(), ds.count_sample_tags(), sorted(ds.get_field_schema()))
    with pytest.raises(OODInputError, match=r"audit label_field 'gt': fewer than 2 samples of the view have a label "
                                            r"and an embedding in 'vec'.*or label_field=None"):
        _audit(ds, tmp_path, **{"label_field": "gt"})
    assert (ds.list_runs(), ds.count_sample_tags(), sorted(ds.get_field_schema())) == before
    out = _audit(ds, tmp_path, **{"label_field": "auto"})
    assert out["label_field"] is None and "label_issues" not in out["runs"]


def test_the_audit_reports_its_steps_as_every_call_does(probe, tmp_path, capfd):
    """A bar by default (it was silent for minutes from Python), a callable told of its 5 steps, a bad setting
    refused before anything is written."""
    ds = probe
    with pytest.raises(OODInputError, match="progress='yes' is not a progress setting"):
        _audit(ds, tmp_path, progress="yes")
    assert ds.list_runs() == []
    seen = []
    _audit(ds, tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 5) for i in range(1, 6)]
    capfd.readouterr()
    _audit(ds, tmp_path, audit_key="again", report_path=str(tmp_path / "again.html"))  # progress=None: a bar
    err = capfd.readouterr().err
    assert "audit" in err and "/5 " in err and "scoring" in err
