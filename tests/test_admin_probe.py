"""Run administration after what FiftyOne users do with FiftyOne's own APIs between two calls of this package. Gaps a
probe reproduced on real datasets:

1. a key FiftyOne's ``dataset.rename_run`` freed, taken again by a new run (``run_key=`` the old key, another
   field): the flags of the renamed run's scores were attributed to the new run, so ``ood.delete_ood_run`` of the new
   run deleted them with their flag field and tags, and the renamed run had no flags any more;
2. the same for an audit's run: ``ood.repair_ood_runs`` took the audit's renamed run for an interrupted audit's and
   deleted it with the audit's score field;
3. an embeddings run renamed with ``dataset.rename_run`` was offered (first) under its new key, which names no field:
   the audit's ``embeddings_field="auto"`` failed saying "embeddings field 'emb2' does not exist";
4. a user's vector field named with the package's temporary prefix (``tmp_ood_feats``) was never offered, although
   the SDK scores it (the package's own temporary names have an exact shape).

Real FiftyOne datasets on the tests' MongoDB, stored random embeddings (no model). Each test fails without its fix.
"""

import numpy as np
import pytest

import ood_core as ood
from scored_helpers import scored_dataset
from test_run_links import audited  # noqa: F401 (fixture: 24 real images, audited)


@pytest.fixture
def scored(dataset_factory):
    """30 samples, 10 tagged 'trusted', random embeddings 'emb'; k-NN score run 's' (with 's_pvalue') and its flags
    run 's_flag' tagging 5 samples 'look'."""
    return scored_dataset(dataset_factory, "admin_probe")


# --------------------------------------------------------------------------- 1. a freed key taken again


def test_flags_stay_with_their_scores_when_a_new_run_takes_the_key_fiftyones_rename_run_freed(scored):
    ds = scored
    flagged = sorted(ds.match_tags("look").values("id"))
    ds.rename_run("s", "s2")  # FiftyOne's own API: the flags still name 's'
    ood.compute_ood_scores(ds, "emb", "t", run_key="s", method="knn", k=3, reference="trusted")  # a new run 's'
    assert ood.list_flag_runs(ds, "s2") == ["s_flag"] and ood.list_flag_runs(ds, "s") == []
    assert ood.get_flag_info(ds, "s_flag")["score_run"] == "s2"
    assert sorted(ood.delete_ood_run(ds, "s")) == ["t", "t_pvalue"]  # the new run only
    assert "s_flag" in ood.list_ood_runs(ds) and ds.count("s_flag") == 30
    assert sorted(ds.match_tags("look").values("id")) == flagged
    assert ds.get_run_info("s_flag").config.score_run == "s2"  # written back true
    assert sorted(ood.delete_ood_run(ds, "s2")) == ["s", "s_flag", "s_pvalue"]
    assert ood.list_ood_runs(ds) == [] and len(ds.match_tags("look")) == 0


def test_renaming_the_run_that_took_a_freed_key_leaves_the_flags_with_their_scores(scored):
    ds = scored
    ds.rename_run("s", "s2")
    ood.compute_ood_scores(ds, "emb", "t", run_key="s", method="knn", k=3, reference="trusted")
    ood.rename_ood_run(ds, "s", "t_run")
    assert ds.get_run_info("s_flag").config.score_run == "s2"
    assert ood.list_flag_runs(ds, "t_run") == [] and ood.list_flag_runs(ds, "s2") == ["s_flag"]


def test_repair_keeps_an_audits_renamed_run_when_a_new_run_takes_its_old_key(audited):
    ds = audited
    scores = ds.values("audit_ood")
    ds.rename_run("audit_ood", "a2")  # FiftyOne's own API; the audit still lists 'audit_ood'
    ood.compute_ood_scores(ds, "emb", "x", run_key="audit_ood", method="knn", k=3, reference="trusted")
    assert ood.get_ood_run_info(ds, "ood_audit")["audit_runs"]["ood"] == "a2"
    assert ood.get_ood_run_info(ds, "audit_ood_flag")["score_run"] == "a2"
    assert ood.repair_ood_runs(ds)["interrupted_audit_runs_removed"] == []
    assert {"a2", "audit_ood", "audit_ood_flag"} <= set(ood.list_ood_runs(ds))
    assert ds.values("audit_ood") == scores
    assert ds.get_run_info("ood_audit").config.audit_runs["ood"] == "a2"  # written back true
    assert sorted(ood.delete_ood_run(ds, "audit_ood")) == ["x", "x_pvalue"]
    assert ds.get_run_info("ood_audit").config.audit_runs["ood"] == "a2" and ds.values("audit_ood") == scores


def test_repair_keeps_the_runs_of_an_audit_whose_record_fiftyones_delete_run_removed(audited):
    """``dataset.delete_run("ood_audit")`` (FiftyOne's own API) removed the record without releasing its runs, so
    they looked like an interrupted audit's: ``repair_ood_runs`` then deleted all four with their scores, flags
    and tags. Runs of a recorded audit now say so, and stay as runs of their own."""
    ds = audited
    runs_before = set(ood.list_ood_runs(ds)) - {"ood_audit"}
    scores, tags, views = ds.values("audit_ood"), ds.count_sample_tags(), set(ds.list_saved_views())
    ds.delete_run("ood_audit")
    assert ood.repair_ood_runs(ds)["interrupted_audit_runs_removed"] == []
    assert set(ood.list_ood_runs(ds)) == runs_before and ds.values("audit_ood") == scores
    assert ds.count_sample_tags() == tags and set(ds.list_saved_views()) == views


def test_repair_keeps_the_runs_of_an_earlier_versions_audit_whose_record_was_deleted(audited):
    """An audit recorded by a version before the marks (its runs name it but carry neither ``audit_recorded`` nor
    the marker that this version's audits set): with its record deleted by FiftyOne's ``delete_run`` nothing tells it
    from an interrupted one, so its runs are kept instead of deleted with their scores, flags and tags."""
    from ood_core.fo import audit_recovery, runs as fo_runs

    ds = audited
    runs_before = set(ood.list_ood_runs(ds)) - {"ood_audit"}
    for key in runs_before:  # as an earlier version recorded them
        config = ds.get_run_info(key).config
        if getattr(config, "made_by_audit", None):
            assert getattr(config, fo_runs.AUDIT_MARKS) is True  # this version sets it
            for name in (audit_recovery.RECORDED, fo_runs.AUDIT_MARKS):
                if hasattr(config, name):
                    delattr(config, name)
            ds.update_run_config(key, config)
    scores, tags = ds.values("audit_ood"), ds.count_sample_tags()
    ds.delete_run("ood_audit")
    assert ood.repair_ood_runs(ds)["interrupted_audit_runs_removed"] == []
    assert set(ood.list_ood_runs(ds)) == runs_before and ds.values("audit_ood") == scores
    assert ds.count_sample_tags() == tags


# --------------------------------------------------------------------------- 3. an embeddings run renamed by FiftyOne


def test_an_embeddings_run_renamed_with_fiftyones_rename_run_is_not_offered_under_a_key_naming_no_field(
        dataset_factory, fashion_files, tmp_path):
    import fiftyone.core.fields as fof

    from ood_core.fo import runs as fo_runs
    from ood_core.fo.inventory import embedding_choices

    paths, names = fashion_files
    idx = [c * 20 + j for c in range(8) for j in range(3)]
    ds = dataset_factory([paths[i] for i in idx], [names[i] for i in idx],
                         [["trusted"] if j < 2 else [] for j in [i % 20 for i in idx]])
    vectors = list(np.random.default_rng(3).normal(size=(len(ds), 8)).astype(np.float32))
    fo_runs.write_and_record(ds, [("emb", vectors, fof.VectorField)], "emb", kind="embeddings")
    ds.rename_run("emb", "emb2")  # FiftyOne's own API: the run 'emb2' still writes the field 'emb'
    choices = dict(embedding_choices(ds))
    assert "emb2" not in choices  # no field of that name: the forms offered (and preselected) it
    assert "'emb2'" in choices["emb"] and "rename it back to 'emb'" in choices["emb"]
    summary = ood.audit(ds, embeddings_field="auto", label_field=None, report_path=str(tmp_path / "a.html"),
                        near_duplicates=False)  # failed: "embeddings field 'emb2' does not exist"
    assert ds.count("audit_ood") == len(ds) and summary is not None


# --------------------------------------------------------------------------- 4. a user's field with the prefix


def test_a_users_vector_field_with_the_temporary_prefix_is_offered_and_the_packages_own_is_not(dataset_factory):
    from ood_core.fo.inventory import embedding_choices

    ds = dataset_factory([f"/tmp/admin_probe_v_{i}.png" for i in range(6)])
    vectors = list(np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
    ds.set_values("tmp_ood_feats", vectors)  # the user's (the SDK scores it)
    ds.set_values("tmp_ood_0123456789", vectors)  # the exact shape of the package's temporary fields
    assert embedding_choices(ds) == [("tmp_ood_feats", "vector field")]
