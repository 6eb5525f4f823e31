"""k-NN scoring through a FiftyOne Brain similarity index, against a real pgvector server.

The server is PostgreSQL 16 + pgvector from the ``pgserver`` wheel, started on
127.0.0.1 by ``tests/pg_loopback.py``. Embeddings are synthetic with a known
answer: in-distribution Gaussian clusters and a shifted OOD group.
"""

import os

import numpy as np
import psycopg2
import pytest
from pg_loopback import LoopbackPostgres

from ood_core import compute_knn_scores_with_index, compute_ood_scores
from ood_core.detectors import KNNDetector
from ood_core.errors import BackendError, OODInputError
from ood_core.fo.similarity import distances_to_scores, kth_distance

EXACT = {"index_type": "ivfflat", "ivfflat_lists": 1}  # one list: pgvector scans every row


@pytest.fixture(scope="module")
def pg():
    server = LoopbackPostgres().start()
    yield server
    server.stop()


def pg_tables(pg):
    with psycopg2.connect(pg.connection_string) as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        return sorted(r[0] for r in cur.fetchall())


@pytest.fixture
def emb_dataset(dataset_factory):
    """240 trusted + 60 untagged ID + 40 OOD samples with 24-d embeddings in field ``emb``."""
    rng = np.random.default_rng(7)
    n_ref, n_id, n_ood, d = 240, 60, 40, 24
    centers = rng.normal(size=(4, d)) * 3
    X_id = centers[rng.integers(0, 4, n_ref + n_id)] + rng.normal(size=(n_ref + n_id, d))
    X_ood = rng.normal(size=(n_ood, d)) * 3 + 6
    X = np.vstack([X_id, X_ood]).astype(np.float32)
    n = len(X)
    tags = [["trusted"] if i < n_ref else (["ood"] if i >= n_ref + n_id else []) for i in range(n)]
    ds = dataset_factory([f"/tmp/ood-sim-{i}.png" for i in range(n)], tags=tags)
    ds.set_values("emb", list(X))
    return ds, X, n_ref, n_id, n_ood


def test_pgvector_exact_index_matches_in_memory_knn(pg, emb_dataset):
    ds, X, n_ref, n_id, n_ood = emb_dataset
    compute_ood_scores(ds, "emb", "exact", method="knn", reference="trusted", k=10, neighbor_backend="sklearn")
    summary = compute_knn_scores_with_index(
        ds, "emb", "via_pg", reference="trusted", k=10, batch_size=64, progress=False,
        connection_string=pg.connection_string, **EXACT,
    )
    exact = np.array(ds.values("exact"))
    via_pg = np.array(ds.values("via_pg"))
    # trusted samples are left out of their own neighbours on both paths
    np.testing.assert_allclose(via_pg, exact, rtol=1e-5, atol=1e-6)
    assert summary["num_scored"] == len(X)
    # the OOD group scores higher than the in-distribution samples (higher = more OOD)
    assert via_pg[-n_ood:].min() > np.median(via_pg[:n_ref + n_id])
    # a temporary index: the table is dropped and no brain run is left behind
    assert pg_tables(pg) == []
    assert ds.list_brain_runs() == []
    info = ds.get_run_info("via_pg").config
    assert info.detector["backend"] == "fiftyone-brain:pgvector"
    assert info.similarity["metric"] == "cosine" and info.similarity["kept"] is False
    # calibrated like every OOD run: the share of trusted samples (their self-excluded scores) scoring at least
    # as high, (1 + count) / (n_ref + 1)
    trusted = via_pg[:n_ref]
    expected = [(1 + np.sum(trusted >= s)) / (n_ref + 1) for s in via_pg]
    np.testing.assert_allclose(ds.values("via_pg_pvalue"), expected)
    assert info.calibration["num_reference"] == n_ref and info.calibration["field"] == "via_pg_pvalue"
    # a view without the trusted samples: their scores are queried for the p-values
    untagged = ds.match_tags("trusted", bool=False)
    compute_knn_scores_with_index(untagged, "emb", "view_pg", reference="trusted", k=10, progress=False,
                                  connection_string=pg.connection_string, **EXACT)
    np.testing.assert_allclose(untagged.values("view_pg_pvalue"), expected[n_ref:])


def test_kept_index_is_reused_by_brain_key(pg, emb_dataset):
    ds, X, n_ref, _, _ = emb_dataset
    compute_knn_scores_with_index(
        ds, "emb", "first", reference="trusted", brain_key="ref_index", k=5, progress=False,
        connection_string=pg.connection_string, **EXACT,
    )
    assert "ref_index" in ds.list_brain_runs()
    tables = pg_tables(pg)
    assert len(tables) == 1
    with psycopg2.connect(pg.connection_string) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{tables[0]}"')
        assert cur.fetchone()[0] == n_ref
    # second run: the index alone defines the reference; nothing is uploaded again
    compute_knn_scores_with_index(ds, "emb", "second", brain_key="ref_index", k=5, progress=False)
    np.testing.assert_allclose(ds.values("second"), ds.values("first"), rtol=1e-6)
    assert pg_tables(pg) == tables
    # a later process reuses it too, with the connection settings passed again (they were dropped)
    import subprocess
    import sys

    code = ("import fiftyone as fo\nfrom ood_core.fo.similarity import compute_knn_scores_with_index\n"
            f"ds = fo.load_dataset({ds.name!r})\n"
            f"compute_knn_scores_with_index(ds, 'emb', 'third', brain_key='ref_index', k=5, progress=False, "
            f"connection_string={pg.connection_string!r})\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo,
                   env={**os.environ, "PYTHONPATH": repo}, capture_output=True, timeout=300)
    ds.reload()
    np.testing.assert_allclose(ds.values("third"), ds.values("first"), rtol=1e-6)
    assert pg_tables(pg) == tables
    # what the README tells users to do before deleting a kept index: its table goes with it
    ds.load_brain_results("ref_index").cleanup(drop_table=True)
    ds.delete_brain_run("ref_index")
    assert pg_tables(pg) == [] and ds.list_brain_runs() == []


def test_euclidean_index_matches_unnormalised_knn(pg, emb_dataset):
    ds, X, n_ref, _, _ = emb_dataset
    compute_knn_scores_with_index(
        ds, "emb", "l2", reference="trusted", k=7, metric="euclidean", progress=False,
        connection_string=pg.connection_string, **EXACT,
    )
    det = KNNDetector(k=7, normalize=False, backend="sklearn").fit(X[:n_ref])
    expected = det.score_samples(X[n_ref:])
    np.testing.assert_allclose(np.array(ds.values("l2"))[n_ref:], expected, rtol=1e-5)
    assert ds.get_run_info("l2").config.detector["normalize"] is False


def test_hnsw_index_never_scores_below_exact(pg, emb_dataset):
    """An approximate index can only miss neighbours, so its k-th distance is >= the exact one."""
    ds, X, _, _, n_ood = emb_dataset
    compute_ood_scores(ds, "emb", "exact", method="knn", reference="trusted", k=10, neighbor_backend="sklearn")
    compute_knn_scores_with_index(
        ds, "emb", "hnsw", reference="trusted", k=10, progress=False,
        connection_string=pg.connection_string, index_type="hnsw", hnsw_ef_search=100,
    )
    exact, approx = np.array(ds.values("exact")), np.array(ds.values("hnsw"))
    assert np.all(approx >= exact - 1e-5)
    assert np.isclose(approx, exact, rtol=1e-5).mean() > 0.9


def test_progress_callback_counts_upload_and_queries(pg, emb_dataset):
    ds, X, n_ref, _, _ = emb_dataset
    calls = []
    compute_knn_scores_with_index(
        ds, "emb", "p", reference="trusted", k=5, batch_size=100,
        progress=lambda done, total: calls.append((done, total)),
        connection_string=pg.connection_string, **EXACT,
    )
    assert calls[:3] == [(100, n_ref), (200, n_ref), (n_ref, n_ref)]
    assert calls[3:] == [(100, len(X)), (200, len(X)), (300, len(X)), (len(X), len(X))]


def test_unreachable_server_writes_nothing(emb_dataset):
    ds, _, _, _, _ = emb_dataset
    with pytest.raises(BackendError, match="server is running"):
        compute_knn_scores_with_index(
            ds, "emb", "never", reference="trusted", brain_key="dead", k=5, progress=False,
            connection_string="postgresql://postgres@127.0.0.1:1/postgres",
        )
    assert ds.get_field("never") is None
    assert not ds.has_run("never")
    assert not ds.has_brain_run("dead")


def test_bad_inputs_are_refused_before_any_work(pg, emb_dataset):
    ds, _, n_ref, _, _ = emb_dataset
    cs = pg.connection_string
    with pytest.raises(OODInputError, match="reference="):
        compute_knn_scores_with_index(ds, "emb", "s", k=5, connection_string=cs)
    with pytest.raises(OODInputError, match="k must be < 240"):
        compute_knn_scores_with_index(ds, "emb", "s", reference="trusted", k=n_ref, connection_string=cs)
    with pytest.raises(OODInputError, match="does not exist"):
        compute_knn_scores_with_index(ds, "nope", "s", reference="trusted", connection_string=cs)
    with pytest.raises(OODInputError, match="centres the embeddings"):
        compute_knn_scores_with_index(ds, "emb", "s", reference="trusted", k=5, backend="sklearn")
    ds.set_values("s", [1.0] * len(ds))
    with pytest.raises(OODInputError, match="no fiftyone-ood run wrote it"):
        compute_knn_scores_with_index(ds, "emb", "s", reference="trusted", k=5, connection_string=cs)
    assert ds.values("s") == [1.0] * len(ds)
    with pytest.raises(OODInputError, match='metric="cosine"'):
        compute_knn_scores_with_index(ds, "emb", "t", reference="trusted", k=5, metric="dotproduct",
                                      progress=False, connection_string=cs, **EXACT)
    assert ds.get_field("t") is None and pg_tables(pg) == []
    with pytest.raises(OODInputError, match='metric="cosine"'):  # a kept index is not created either
        compute_knn_scores_with_index(ds, "emb", "t", reference="trusted", k=5, metric="dotproduct",
                                      brain_key="kept", progress=False, connection_string=cs, **EXACT)
    assert pg_tables(pg) == [] and ds.list_brain_runs() == []


def test_distance_helpers():
    assert kth_distance(["a", "b", "c"], [0.0, 0.5, 0.7], "a", 2) == 0.7
    assert kth_distance(["b", "c", "d"], [0.1, 0.5, 0.7], "a", 2) == 0.5
    assert kth_distance(["a", "b"], [0.0, 0.5], "a", 2) is None
    np.testing.assert_allclose(distances_to_scores([0.0, 0.5, 1.0, 2.0], "cosine"),
                               [0.0, 1.0, np.sqrt(2.0), 2.0])
    assert distances_to_scores(3.5, "euclidean") == 3.5


def test_score_ood_operator_uses_a_similarity_index(pg, emb_dataset):
    """App path: the form lists the dataset's similarity indexes; choosing one queries it."""
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    from ood_core.fo import runs as fo_runs

    ds, X, n_ref, _, _ = emb_dataset
    # the form offers embeddings runs only: record the synthetic field as one
    fo_runs.register_run(ds, "emb", kind="embeddings", fields=["emb"], embeddings_field="emb")
    compute_knn_scores_with_index(
        ds, "emb", "sdk", reference="trusted", brain_key="pg_ref", k=5, progress=False,
        connection_string=pg.connection_string, **EXACT,
    )
    uri = "@fiftyone-ood/ood/score_ood"
    ctx = ExecutionContext(request_params=dict(dataset_name=ds.name, params=dict(method="knn")))
    props = foo.get_operator(uri).resolve_input(ctx).type.properties
    assert "similarity_index" in props
    result = foo.execute_operator(uri, dict(view=ds.view()), params=dict(
        embeddings_field="emb", score_field="via_op", method="knn", similarity_index="pg_ref", k=5))
    assert result.error is None, result.error
    np.testing.assert_allclose(ds.values("via_op"), ds.values("sdk"), rtol=1e-6)
    assert ds.get_run_info("via_op").config.similarity["brain_key"] == "pg_ref"
    ds.load_brain_results("pg_ref").cleanup(drop_table=True)
    ds.delete_brain_run("pg_ref")


def test_near_duplicates_name_each_duplicates_kept_sample_at_its_true_distance(dataset_factory):
    """The Brain's neighbours map measured distances in a re-centred subset (an exact copy came out 0.15 apart,
    above the 0.1 threshold that found it) and was keyed by the kept sample only, so the audit's report and CSV,
    which look a duplicate up by its own id, showed no kept sample and a distance of 0."""
    from ood_core.fo import near_duplicates

    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 8)).astype(np.float32)
    X[1], X[5] = X[0], X[4] + rng.normal(size=8).astype(np.float32) * 0.01  # an exact copy and a near one
    ds = dataset_factory([f"/tmp/ood-dup-{i}.png" for i in range(8)])
    ds.set_values("emb", list(X))
    ids = ds.values("id")
    found = near_duplicates.find(ds, "emb", 0.1, "audit_x")
    assert found["duplicate_ids"] == sorted([ids[1], ids[5]])
    for dup, kept, near in ((ids[1], ids[0], 1e-6), (ids[5], ids[4], 1e-3)):
        (other, dist), = found["neighbors"][dup]
        assert other == kept and dist == pytest.approx(0.0, abs=near)
        assert [d for d, _ in found["neighbors"][kept]] == [dup]
    assert all(dist <= 0.1 for pairs in found["neighbors"].values() for _, dist in pairs)
