"""Links between runs (a flags run's ``score_run``, an audit's ``audit_runs``) after FiftyOne's own
``dataset.rename_run``, and the counts and scores of runs after the dataset's samples change. Gaps a probe
reproduced on real datasets:

1. an audit kept a dangling reference: after ``ds.rename_run("audit_ood", "a2")`` and ``ood.delete_ood_run(ds, "a2")``
   its record still listed ``'ood': 'audit_ood'``; ``get_ood_run_info`` gave the old key, and
   ``ood.repair_ood_runs`` took the renamed run (made by the audit, not listed under its new key) for the run of
   an interrupted audit and deleted it with its fields (so did it after the audit itself was deleted, whose
   renamed run kept naming it as its maker);
2. ``ood.rename_ood_run`` left an already dangling link dangling: flags naming the key FiftyOne renamed away kept
   naming it;
3. ``ood.get_flag_info(...)["num_flagged"]`` still counted samples deleted since the flags were made;
4. ``a.merge_samples(b)`` (or ``add_samples``) brought the scores of ``b``'s run ``s`` into ``a``'s field ``s``, and
   ``flag_samples`` / ``evaluate_ood_run`` read them as the scores of ``a``'s run ``s``.

Real FiftyOne datasets on the tests' MongoDB, stored random embeddings (no model). Each test fails without the fix
it covers.
"""

import numpy as np
import pytest
from fiftyone import ViewField as F

import ood_core as ood
from ood_core.errors import OODInputError
from scored_helpers import scored_dataset


@pytest.fixture
def scored(dataset_factory):
    """30 samples, 10 tagged 'trusted', random embeddings 'emb'; k-NN score run 's' (with 's_pvalue') against the
    trusted samples and its flags run 's_flag' tagging 5 samples 'look'."""
    return scored_dataset(dataset_factory, "run_links")


@pytest.fixture
def audited(dataset_factory, fashion_files, tmp_path):
    """24 real images of 8 classes (2 per class tagged 'trusted'), random embeddings 'emb', audited (no near
    duplicates): runs audit_ood(+_flag), audit_label_issue(+_flag), audit record 'ood_audit'."""
    paths, names = fashion_files
    idx = [c * 20 + j for c in range(8) for j in range(3)]
    ds = dataset_factory([paths[i] for i in idx], [names[i] for i in idx],
                         [["trusted"] if j < 2 else [] for j in [i % 20 for i in idx]])
    ds.set_values("emb", list(np.random.default_rng(1).normal(size=(len(ds), 8)).astype(np.float32)))
    ood.audit(ds, embeddings_field="emb", report_path=str(tmp_path / "a.html"), near_duplicates=False)
    return ds


def _audit_runs(ds, key="ood_audit"):
    """The audit's record as stored (not resolved)."""
    return dict(ds.get_run_info(key).config.audit_runs)


# --------------------------------------------------------------------------- 1. an audit's links


def test_an_audit_forgets_a_run_deleted_after_fiftyones_rename_run(audited):
    ds = audited
    ds.rename_run("audit_ood", "a2")  # FiftyOne's own API: the audit's record still says 'audit_ood'
    assert sorted(ood.delete_ood_run(ds, "a2")) == ["audit_ood", "audit_ood_flag", "audit_ood_pvalue"]
    listed = _audit_runs(ds)
    assert "ood" not in listed and "ood_flags" not in listed, listed  # no dangling 'audit_ood'
    assert set(listed.values()) == {"audit_label_issue", "audit_label_issue_flag"}
    assert not {"audit_ood", "audit_ood_pvalue", "audit_ood_flag"} & set(ds.get_run_info("ood_audit").config
                                                                          .audit_fields)


def test_repair_keeps_an_audits_run_renamed_by_fiftyone(audited):
    ds = audited
    values = ds.values("audit_label_issue")
    ds.rename_run("audit_label_issue", "li2")
    ds.rename_run("audit_ood_flag", "of2")
    assert ood.repair_ood_runs(ds)["interrupted_audit_runs_removed"] == []
    assert {"li2", "of2"} <= set(ood.list_ood_runs(ds)) and ds.values("audit_label_issue") == values
    info = ood.get_ood_run_info(ds, "ood_audit")["audit_runs"]
    assert info == {"ood": "audit_ood", "ood_flags": "of2", "label_issues": "li2",
                    "label_issue_flags": "audit_label_issue_flag"}
    assert ood.get_ood_run_info(ds, "audit_label_issue_flag")["score_run"] == "li2"
    assert _audit_runs(ds) == info  # the records were written true
    assert ds.get_run_info("audit_label_issue_flag").config.score_run == "li2"


def test_deleting_an_audit_releases_its_run_renamed_by_fiftyone(audited):
    ds = audited
    ds.rename_run("audit_ood", "a2")
    ood.delete_ood_run(ds, "ood_audit")  # its runs stay, as runs of their own: no longer made by it
    assert ds.get_run_info("a2").config.made_by_audit is None
    assert ood.repair_ood_runs(ds)["interrupted_audit_runs_removed"] == []
    assert {"a2", "audit_ood_flag", "audit_label_issue"} <= set(ood.list_ood_runs(ds)) and ds.count("audit_ood")


def test_an_audit_redo_removes_its_run_renamed_by_fiftyone(audited, tmp_path):
    # a redo under other field names removed the earlier audit's runs but left the renamed one (the next
    # repair_ood_runs then deleted it as an interrupted audit's run)
    ds = audited
    ds.rename_run("audit_label_issue", "li2")
    summary = ood.audit(ds, embeddings_field="emb", label_field=None, ood_field="o2", label_issue_field="l2",
                        report_path=str(tmp_path / "b.html"), near_duplicates=False, overwrite=True)
    assert "li2" in summary["removed_runs"] and "li2" not in ood.list_ood_runs(ds)
    assert not ds.has_field("audit_label_issue")
    assert ood.repair_ood_runs(ds)["interrupted_audit_runs_removed"] == []


# --------------------------------------------------------------------------- 2. ood.rename_ood_run repairs links


def test_rename_ood_run_repairs_the_links_fiftyones_rename_run_left_dangling(scored, audited):
    ds = scored
    ds.rename_run("s", "s2")  # FiftyOne's own API: 's_flag' still names 's'
    ood.rename_ood_run(ds, "s2", "s3")
    assert ds.get_run_info("s_flag").config.score_run == "s3"  # stored, not only resolved on read
    assert ood.list_flag_runs(ds, "s3") == ["s_flag"]

    ds = audited
    ds.rename_run("audit_ood", "a2")
    ood.rename_ood_run(ds, "a2", "a3")
    assert _audit_runs(ds)["ood"] == "a3" and ds.get_run_info("audit_ood_flag").config.score_run == "a3"
    assert _audit_runs(ds)["label_issues"] == "audit_label_issue"  # the others as they were
    assert sorted(ood.delete_ood_run(ds, "a3")) == ["audit_ood", "audit_ood_flag", "audit_ood_pvalue"]
    assert set(_audit_runs(ds).values()) == {"audit_label_issue", "audit_label_issue_flag"}


# --------------------------------------------------------------------------- 3. flag counts after deleting samples


def test_flag_counts_are_those_of_the_samples_that_exist_now(scored):
    ds = scored
    flagged = ds.match(F("s_flag") == True).values("id")  # noqa: E712
    assert ood.get_flag_info(ds, "s_flag")["num_flagged"] == len(flagged) == 5
    ds.delete_samples(flagged[:2] + ds.match(F("s_flag") == False).limit(1).values("id"))  # noqa: E712
    info = ood.get_flag_info(ds, "s_flag")
    assert info["num_flagged"] == 3 == len(ds.match(F("s_flag") == True))  # noqa: E712
    assert info["num_scored"] == 27 == ds.count("s_flag")


# --------------------------------------------------------------------------- 4. values merged from another dataset


@pytest.mark.parametrize("how", ["merge_samples", "add_samples"])
def test_scores_merged_from_another_datasets_run_are_not_read_as_this_runs(scored, dataset_factory, how):
    a = scored
    b = dataset_factory([f"/tmp/run_links_b_{i}.png" for i in range(12)],
                        tags=[["trusted"] if i < 4 else [] for i in range(12)])
    b.set_values("emb", list(np.random.default_rng(2).normal(size=(12, 8)).astype(np.float32)))
    ood.compute_ood_scores(b, "emb", "s", method="knn", k=3, reference="trusted")  # b's own run 's'
    getattr(a, how)(b)
    assert len(a) == 42 and a.count("s") == 42  # 12 of them b's scores, under a's run 's'
    for read in (lambda: ood.flag_samples(a, "s", rule="top_n", value=3, tag="look", overwrite=True),
                 lambda: ood.evaluate_ood_run(a, "s", gt_tag="trusted")):
        with pytest.raises(OODInputError, match=r"field 's' .* holds 42 values, but score run 's' wrote 30: at "
                                                r"least 12 came from elsewhere .*overwrite=True"):
            read()
    assert ood.get_flag_info(a, "s_flag")["num_scored"] == 30  # the flags were not replaced
    # deleting scored samples is not values from elsewhere; scoring again makes every value the run's
    a.delete_samples(a.match(F("filepath").starts_with("/tmp/run_links_b_")).values("id"))
    a.delete_samples(a.match_tags("trusted", bool=False).limit(2).values("id"))
    assert ood.flag_samples(a, "s", rule="top_n", value=3, overwrite=True)["num_scored"] == 28
    getattr(a, how)(b)
    ood.compute_ood_scores(a, "emb", "s", method="knn", k=3, reference="trusted", overwrite=True)
    assert ood.flag_samples(a, "s", rule="top_n", value=3, overwrite=True)["num_scored"] == 40
