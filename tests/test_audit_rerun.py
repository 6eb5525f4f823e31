"""Redoing an audit replaces the earlier one whole; the audit names what it wrote; run records never point to
deleted runs; flags records count their whole field.

Real Fashion-MNIST images on the tests' private MongoDB; each test fails without the fix it covers.
"""

import numpy as np
import pytest
from fiftyone import ViewField as F

import ood_core as ood
from fault_helpers import RUN_TAG_VIEW_STEPS, run_faulted
from ood_core.errors import OODInputError
from ood_core.fo import commit
from ood_core.fo import runs as fo_runs

PLUGIN = "@fiftyone-ood/ood"
LABEL_RUNS = {"audit_label_issue", "audit_label_issue_flag"}
LABEL_FIELDS = {"audit_label_issue", "audit_label_issue_suggestion", "audit_label_issue_flag"}


@pytest.fixture
def ds(dataset_factory, fashion_files):
    """24 real images, 3 per class of 8 classes; the first 2 of each class tagged 'trusted'; embeddings 'emb'."""
    paths, names = fashion_files
    idx = [c * 20 + j for c in range(8) for j in range(3)]
    tags = [["trusted"] if j < 2 else [] for j in [i % 20 for i in idx]]
    d = dataset_factory([paths[i] for i in idx], [names[i] for i in idx], tags)
    ood.compute_pyramid_embeddings(d, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1,
                                   progress=False)
    return d


def _audit(ds, tmp_path, **kwargs):
    return ood.audit(ds, report_path=str(tmp_path / "a.html"), near_duplicates=False, **kwargs)


def _records_match_fields(ds):
    """Every run record lists only fields that exist, and every flags run's score run exists."""
    keys = fo_runs.list_ood_runs(ds)
    for key in keys:
        info = fo_runs.get_ood_run_info(ds, key)
        assert all(ds.has_field(f) for f in info["fields"]), (key, info["fields"])
        if info["kind"] == "flags":
            assert info["score_run"] in keys, (key, info["score_run"])


def _claimed(ds, tag):
    return {i for key in ood.list_flag_runs(ds) if ood.get_flag_info(ds, key)["tag"] == tag
            for i in ood.get_flag_info(ds, key)["tagged_ids"]}


# --------------------------------------------------------------------------- 1. a redone audit replaces the old


def test_redoing_an_audit_without_a_label_field_removes_the_earlier_label_runs(ds, tmp_path):
    first = _audit(ds, tmp_path)
    assert LABEL_RUNS <= set(ood.list_ood_runs(ds)) and "ood_audit-label-issues" in ds.list_saved_views()
    flagged = set(ds.match_tags("label_issue").values("id"))
    assert flagged and first["num_label_flagged"] == len(flagged)
    hand = ds.match_tags("label_issue", bool=False).first()  # a curator's own tag: never touched
    hand.tags.append("label_issue")
    hand.save()
    ood_scores = ds.values("audit_ood")

    # from a view the label runs would go for the samples outside it too: refused, nothing changed
    with pytest.raises(OODInputError, match=r"also made the runs \['audit_label_issue', 'audit_label_issue_flag'\]"
                                            r".*Redo the audit on the whole dataset"):
        _audit(ds.limit(20), tmp_path, label_field=None, overwrite=True)
    assert LABEL_RUNS <= set(ood.list_ood_runs(ds)) and set(ds.match_tags("label_issue").values("id")) == \
        flagged | {hand.id}

    out = _audit(ds, tmp_path, label_field=None, overwrite=True)
    assert out["removed_runs"] == ["audit_label_issue", "audit_label_issue_flag"]
    assert set(out["removed_fields"]) == LABEL_FIELDS
    assert sorted(ood.list_ood_runs(ds)) == ["audit_ood", "audit_ood_flag", "emb", "ood_audit"]
    assert not LABEL_FIELDS & set(ds.get_field_schema())
    assert ds.list_saved_views() == ["ood_audit-ood"]
    assert set(ds.match_tags("label_issue").values("id")) == {hand.id}  # the audit's tags went, the curator's stay
    assert ood.get_ood_run_info(ds, "ood_audit")["audit_runs"] == out["runs"]
    assert np.allclose(ds.values("audit_ood"), ood_scores)
    assert commit.internal_fields(ds) == [] and not [k for k in ds.list_runs() if k.startswith("tmp_ood")]
    _records_match_fields(ds)


def test_a_redone_audit_that_flags_no_wrong_label_removes_its_earlier_view_and_saves_no_empty_one(ds, tmp_path):
    """One class left: the redo flags no wrong label, so it saves no (empty) ``-label-issues`` view, and the
    earlier audit's view of the flags it removed goes too; a view the user saved stays."""
    first = _audit(ds, tmp_path)
    assert first["num_label_flagged"] and "ood_audit-label-issues" in first["saved_views"]
    ds.save_view("my-review", ds.match_tags("label_issue"))  # the user's own: never the audit's to remove
    ds.set_values("ground_truth.label", ["Shirt"] * len(ds))
    out = _audit(ds, tmp_path, overwrite=True)
    assert out["num_label_flagged"] == 0 and not any(ds.values("audit_label_issue_flag"))
    assert out["saved_views"] == ["ood_audit-ood"]
    assert sorted(ds.list_saved_views()) == ["my-review", "ood_audit-ood"]
    assert ood.get_ood_run_info(ds, "ood_audit")["saved_views"] == ["ood_audit-ood"]
    assert ood.load_ood_results(ds, "ood_audit").summary["saved_views"] == ["ood_audit-ood"]


def _old_or_new(ds, old_issue, hand_id):
    """The earlier audit whole (label runs, fields, values, tags, saved views) or the new one without them."""
    ds.reload()
    info = fo_runs.get_ood_run_info(ds, "ood_audit")
    _records_match_fields(ds)
    assert set(ds.match_tags("label_issue").values("id")) == _claimed(ds, "label_issue") | {hand_id}
    assert {v for v in ds.list_saved_views() if v.startswith("ood_audit-")} == set(info["saved_views"])
    if info["label_field"] == "ground_truth":
        assert LABEL_RUNS <= set(ood.list_ood_runs(ds)) and LABEL_FIELDS <= set(ds.get_field_schema())
        assert ds.values("audit_label_issue") == old_issue
        return "old"
    assert info["label_field"] is None and "label_issues" not in info["audit_runs"]
    assert not LABEL_RUNS & set(ood.list_ood_runs(ds)) and not LABEL_FIELDS & set(ds.get_field_schema())
    return "new"


@pytest.mark.parametrize("killed", [False, True], ids=["exception", "killed"])
def test_a_redone_audit_failing_at_any_step_leaves_the_old_or_the_new_audit(ds, tmp_path, monkeypatch, killed):
    """An exception (undone in the process) or a killed process (nothing undone: the next call's repair reads
    the journal) at every database-changing step of the commit that records the new audit and drops the old
    audit's label runs, their tags and the 'ood_audit-label-issues' view (these used to be removed after the
    commit, outside its journal: a crash there left tags and a view belonging to no run)."""
    _audit(ds, tmp_path)
    hand = ds.match_tags("label_issue", bool=False).first()
    hand.tags.append("label_issue")
    hand.save()
    old_issue = ds.values("audit_label_issue")
    outcomes, n = [], 1
    while True:
        fault, failed = run_faulted(monkeypatch, n, RUN_TAG_VIEW_STEPS,
                                    lambda: _audit(ds, tmp_path, label_field=None, overwrite=True),
                                    killed=killed, after_report=True)
        ood.repair_ood_runs(ds)
        assert commit.internal_fields(ds) == [] and not [k for k in ds.list_runs() if k.startswith("tmp_ood")]
        state = _old_or_new(ds, old_issue, hand.id)
        if len(fault.calls) < n:  # went through without reaching call n: every step was hit
            assert not failed and state == "new"
            break
        outcomes.append((fault.calls[n - 1], failed, state))
        if state == "new":  # the fault hit after the new record was in place: start again from the old audit
            _audit(ds, tmp_path, overwrite=True)
            old_issue = ds.values("audit_label_issue")
        n += 1
    assert {"rename_sample_field", "rename_run", "register_run"} <= {name for name, failed, _ in outcomes if failed}
    # the earlier audit's tags and view go in the commit's roll-forward: a fault there is left to the repair
    assert {"untag_samples", "delete_saved_view"} <= {name for name, _, _ in outcomes}, outcomes
    assert any(state == "old" for _, failed, state in outcomes if failed)  # rolled back
    assert any(state == "new" for _, _, state in outcomes)  # a fault while dropping the old copies: new stays
    assert len(outcomes) >= 10


# --------------------------------------------------------------------------- 2. the audit names what it wrote


def test_the_audit_and_its_result_view_name_the_runs_and_fields_it_wrote(ds, tmp_path):
    import fiftyone.operators as foo

    out = _audit(ds, tmp_path, audit_key="qa")
    assert out["runs"] == {"ood": "qa_ood", "ood_flags": "qa_ood_flag", "label_issues": "qa_label_issue",
                           "label_issue_flags": "qa_label_issue_flag"}
    assert out["fields"] == ["qa_ood", "qa_ood_pvalue", "qa_ood_flag", "qa_label_issue", "qa_label_issue_suggestion",
                             "qa_label_issue_flag"]
    assert all(ds.has_field(f) for f in out["fields"])
    assert ood.get_ood_run_info(ds, "qa")["audit_fields"] == out["fields"]
    html = open(out["report_path"], encoding="utf-8").read()
    assert "qa_label_issue_suggestion" in html and "qa_ood_pvalue" in html

    result = foo.execute_operator(f"{PLUGIN}/audit_dataset", dict(view=ds.view()),
                                  params=dict(report_path=str(tmp_path / "op.html"), audit_key="op",
                                              label_field="ground_truth", reference_tag="trusted",
                                              embeddings_field="emb", near_duplicates=False))
    assert result.error is None, result.error
    text = result.result["report"]
    for name in ("op_ood", "op_ood_pvalue", "op_ood_flag", "op_label_issue", "op_label_issue_suggestion",
                 "op_label_issue_flag"):
        assert f"`{name}`" in text, name
    assert "sort the grid by `op_ood` or `op_label_issue`" in text
    assert result.result["fields"] == [f.replace("qa_", "op_") for f in out["fields"]]


def test_the_audit_form_names_what_redoing_it_removes_and_refuses_it_from_a_view(ds, tmp_path):
    from fiftyone.operators.executor import ExecutionContext
    import fiftyone.operators as foo

    _audit(ds, tmp_path)
    op = foo.get_operator(f"{PLUGIN}/audit_dataset")

    def form(view, **params):
        ctx = ExecutionContext(request_params=dict(dataset_name=ds.name, view=view._serialize(),
                                                   params=dict(report_path=str(tmp_path / "f.html"), **params)))
        return op.resolve_input(ctx).type.properties

    props = form(ds.view(), overwrite=True, label_field="")
    assert not props["audit_key"].invalid
    assert "audit_label_issue, audit_label_issue_flag" in props["replaced_note"].view.label
    assert "replaced_note" not in form(ds.view(), overwrite=True, label_field="ground_truth")
    props = form(ds.limit(20), overwrite=True, label_field="")
    assert props["audit_key"].invalid and "Redo the audit on the whole dataset" in props["audit_key"].error_message


# --------------------------------------------------------------------------- 3. no record points to a deleted run


def test_deleting_a_score_run_but_keeping_its_fields_forgets_its_flags_runs_too(ds):
    ood.compute_ood_scores(ds, "emb", "s", method="knn", reference="trusted")
    ood.flag_samples(ds, "s", rule="top_n", value=4, tag="look")
    scores, flags, tagged = ds.values("s"), ds.values("s_flag"), set(ds.match_tags("look").values("id"))
    assert ood.delete_ood_run(ds, "s", delete_fields=False) == []  # nothing deleted
    assert ood.list_ood_runs(ds) == ["emb"] and ood.list_flag_runs(ds) == []
    # the fields and the tags stay, as asked (they now belong to no run)
    assert ds.values("s") == scores and ds.values("s_flag") == flags and ds.has_field("s_pvalue")
    assert set(ds.match_tags("look").values("id")) == tagged and len(tagged) == 4
    _records_match_fields(ds)
    with pytest.raises(OODInputError, match="'s_flag' exists .* no fiftyone-ood run wrote it"):
        ood.flag_samples(ds, "s_pvalue", rule="top_n", value=2, flag_field="s_flag", overwrite=True)


# --------------------------------------------------------------------------- 4. flags records count the field


def test_reflagging_a_view_records_the_counts_of_the_whole_flag_field(dataset_factory):
    n = 60
    scores = np.random.default_rng(0).permutation(n).astype(float)
    d = dataset_factory([f"/tmp/rerun_{i}.png" for i in range(n)], tags=[["a"] if i < 20 else [] for i in range(n)])
    fo_runs.write_and_record(d, [("sc", scores.tolist())], "sc", kind="ood_scores", score_field="sc",
                             patches_field=None)
    first, rest = d.match_tags("a"), d.match_tags("a", bool=False)
    ood.flag_samples(first, "sc", rule="top_n", value=3, tag="t")
    out = ood.flag_samples(rest, "sc", rule="top_n", value=5, tag="t", overwrite=True)
    info = ood.get_flag_info(d, "sc_flag")
    in_field = len(d.match(F("sc_flag") == True))  # noqa: E712
    assert in_field == 8
    assert (info["num_flagged"], info["num_scored"]) == (out["num_flagged"], out["num_scored"]) == (8, 60)
    assert (info["num_flagged_in_view"], info["num_scored_in_view"]) == (5, 40)
    assert (out["num_flagged_in_view"], out["num_scored_in_view"]) == (5, 40)
    assert len(info["tagged_ids"]) == 8 == len(d.match_tags("t"))


# --------------------------------------------------------------------------- near-duplicate tags are claimed


def test_near_duplicate_tags_set_by_hand_survive_redoing_failing_and_deleting_the_audit(ds, tmp_path):
    import fiftyone as fo

    copies = [fo.Sample(filepath=s.filepath, ground_truth=s.ground_truth) for s in ds.limit(4)]
    ds.add_samples(copies)
    ood.compute_pyramid_embeddings(ds, "emb", model_name="tf_efficientnet_lite0", levels=[1], grid=1, progress=False)
    hand = {copies[0].id, ds.first().id}  # a curator tagged the first pair before any audit
    for sample in ds.select(sorted(hand)):
        sample.tags.append("near_duplicate")
        sample.save()
    out = ood.audit(ds, report_path=str(tmp_path / "d.html"))
    found = set(ds.match_tags("near_duplicate").values("id"))
    assert out["num_duplicates"] >= 3 and found > hand

    # a redo refused half-way (the OOD scores would change scale from a view) leaves the earlier tags
    ds.clone_sample_field("ground_truth", "gt2")
    with pytest.raises(OODInputError, match="other label_field"):
        ood.audit(ds.limit(20), label_field="gt2", report_path=str(tmp_path / "d.html"), overwrite=True)
    assert set(ds.match_tags("near_duplicate").values("id")) == found

    # a redo without the near-duplicate search removes the audit's tags, not the curator's
    ood.audit(ds, report_path=str(tmp_path / "d.html"), near_duplicates=False, overwrite=True)
    assert set(ds.match_tags("near_duplicate").values("id")) == hand
    ood.audit(ds, report_path=str(tmp_path / "d.html"), overwrite=True)
    assert set(ds.match_tags("near_duplicate").values("id")) == found
    ood.delete_ood_run(ds, "ood_audit")
    assert set(ds.match_tags("near_duplicate").values("id")) == hand


def test_a_redone_audit_that_flags_nothing_leaves_an_empty_export_not_the_earlier_one(dataset_factory, fashion_files,
                                                                                       tmp_path):
    """A redo with export_dir that flagged nothing returned export_dir None and left the earlier audit's export in
    the folder, now showing samples this audit does not flag."""
    import fiftyone as fo

    paths, _ = fashion_files
    d = dataset_factory(paths[:20])
    rng = np.random.default_rng(0)
    d.set_values("vec", list(rng.normal(size=(20, 8)).astype(np.float32)))
    export = tmp_path / "export"
    first = _audit(d, tmp_path, embeddings_field="vec", export_dir=str(export))
    assert first["num_ood_flagged"] >= 1 and first["export_dir"] == str(export)
    d.set_values("vec", [np.ones(8, np.float32)] * 20)  # every score equal: nothing stands out
    out = _audit(d, tmp_path, embeddings_field="vec", export_dir=str(export), overwrite=True)
    assert out["num_ood_flagged"] == 0 and out["export_dir"] == str(export)
    assert len(fo.Dataset.from_dir(str(export), fo.types.FiftyOneDataset)) == 0
