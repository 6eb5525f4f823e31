"""Run listings, field-owner lookups and the "OOD review" panel on datasets with many runs.

Measured on 300 samples (2-core machine; scratch script, numbers in the report): with 200 score runs the panel's
first render took 25.6 s and listing the runs' rows 4.5 s, because listing the runs built every record's config
(FiftyOne's ``list_runs(**filters)``, finding each record by a pass over all of them) and each run's record read
listed the runs again and looked at every record in the database for changes made elsewhere: quadratic in the runs.

Timings are not asserted here (a shared machine); the work is counted instead, on real datasets: how many records
FiftyOne builds (``Run.get_run_info``) and how many times the database is looked at for runs changed by another
process (``run_sync.runs_changed_elsewhere``). Both must grow at most linearly with the number of runs.
"""

import fiftyone.core.runs as fors
import pytest

import ood_core as ood
from ood_core.errors import OODInputError
from fault_helpers import in_another_process
from ood_core.fo import ownership, run_sync
from ood_core.fo import runs as fo_runs
from test_panel import _rendered, _run_panel


@pytest.fixture
def counts(monkeypatch):
    """``{"records": n, "looks": n}``: records FiftyOne built and looks for changes elsewhere (counting spies: the
    real functions still run)."""
    seen = {"records": 0, "looks": 0}
    build = fors.Run.get_run_info
    look = run_sync.runs_changed_elsewhere

    def get_run_info(cls, samples, key):
        seen["records"] += 1
        return build(samples, key)

    def runs_changed_elsewhere(dataset):
        seen["looks"] += 1
        return look(dataset)

    monkeypatch.setattr(fors.Run, "get_run_info", classmethod(get_run_info))
    monkeypatch.setattr(run_sync, "runs_changed_elsewhere", runs_changed_elsewhere)
    return seen


def _add_score_runs(ds, start, stop):
    for i in range(start, stop):
        fo_runs.write_and_record(ds, [(f"s{i}", [float((i * 7 + j) % 11) / 10 for j in range(len(ds))])],
                                 f"s{i}", kind="ood_scores", detector={"method": "knn", "k": 3})


@pytest.fixture
def many(dataset_factory):
    """12 samples, an embeddings run ``emb`` and score runs ``s0``... added by the test."""
    ds = dataset_factory([f"/tmp/many_runs_{i}.png" for i in range(12)])
    ds.set_values("emb", [[float(i), 1.0] for i in range(12)])
    fo_runs.register_run(ds, "emb", kind="embeddings", fields=["emb"])
    return ds


def _work(counts, call):
    counts.update(records=0, looks=0)
    result = call()
    return dict(counts), result


def test_the_panel_reads_each_record_a_bounded_number_of_times_and_looks_once(many, counts):
    _add_score_runs(many, 0, 4)
    few, out = _work(counts, lambda: _run_panel(many, "on_load"))
    assert _rendered(out[1])["type"]["properties"]["run_key"]["default"] in [f"s{i}" for i in range(4)]
    _add_score_runs(many, 4, 12)
    more, out = _work(counts, lambda: _run_panel(many, "on_load"))
    choices = _rendered(out[1])["type"]["properties"]["run_key"]["view"]["choices"]
    assert [c["value"] for c in choices] == sorted(f"s{i}" for i in range(12))  # every score run, sorted by key
    # linear: 3 times the runs may cost up to 3 times the records (quadratic: 9 times); looks do not grow
    assert more["records"] <= 3 * few["records"], (few, more)
    assert more["looks"] <= few["looks"], (few, more)


def test_listing_runs_and_finding_field_owners_build_no_record_per_run(many, counts):
    _add_score_runs(many, 0, 6)
    ood.flag_samples(many, "s1", rule="top_n", value=2, tag=None)  # flags run "s1_flag" writing "s1_flag"
    work, keys = _work(counts, lambda: ood.list_ood_runs(many))
    assert keys == many.list_runs(ood_plugin="fiftyone-ood") == ["emb", "s0", "s1", "s1_flag", "s2", "s3", "s4", "s5"]
    assert work["records"] == 0 and work["looks"] == 1
    assert ood.list_ood_runs(many, kind="embeddings") == ["emb"]
    assert ood.list_ood_runs(many, kind="flags") == many.list_runs(ood_plugin="fiftyone-ood", kind="flags")
    work, fields = _work(counts, lambda: fo_runs.written_fields(many))
    assert fields == {"emb", "s1_flag", *[f"s{i}" for i in range(6)]} and work["records"] == 0
    # the owner lookups of a write: only the run listing the field is read (its mark), not one record per run
    work, _ = _work(counts, lambda: ownership.refuse_stale_records(many, "s3"))
    assert work["records"] <= 1
    with pytest.raises(OODInputError, match="written by another run, 's3'"):
        fo_runs.check_new_run(many, "s4", ["s3"], True, kind="ood_scores")


def test_one_look_still_sees_runs_recorded_elsewhere_before_it(many):
    _add_score_runs(many, 0, 2)
    assert ood.list_ood_runs(many) == ["emb", "s0", "s1"]
    in_another_process(many, "fo_runs.write_and_record(ds, [('s9', [0.5] * len(ds))], 's9', kind='ood_scores')\n")
    with run_sync.one_look():
        assert ood.list_ood_runs(many) == ["emb", "s0", "s1", "s9"]
        assert ood.get_ood_run_info(many, "s9")["fields"] == ["s9"]
    in_another_process(many, "ood.delete_ood_run(ds, 's9')\n")
    assert ood.list_ood_runs(many) == ["emb", "s0", "s1"]  # outside a block every call looks again


def test_the_forms_choices_and_the_panels_run_list_look_once(many, counts):
    from ood_core.fo import inventory
    from operators.panel import reviewable_runs

    _add_score_runs(many, 0, 6)
    fo_runs.register_run(many, "emb2", kind="embeddings", fields=["emb2"])  # its field is missing: not offered
    work, keys = _work(counts, lambda: reviewable_runs(many))
    assert keys == [f"s{i}" for i in range(6)] and work["looks"] == 1
    work, choices = _work(counts, lambda: inventory.embedding_choices(many))
    assert [name for name, _ in choices] == ["emb"] and work["looks"] == 1


def test_the_review_and_manage_runs_listings_look_once(many, counts):
    from operators.review import score_runs
    from operators.runs import run_rows

    _add_score_runs(many, 0, 6)
    work, keys = _work(counts, lambda: score_runs(many))
    assert keys == [f"s{i}" for i in range(6)] and work["looks"] == 1
    work, rows = _work(counts, lambda: run_rows(many))
    assert [r["run_key"] for r in rows] == ["emb"] + [f"s{i}" for i in range(6)] and work["looks"] == 1
    assert {r["kind"] for r in rows} == {"embeddings", "ood_scores"}
