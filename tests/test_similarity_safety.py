"""A new pgvector index never drops or writes into a table or index of the user's (real loopback server).

The Brain's pgvector backend writes its rows into an existing table named ``table_name``, drops an index named
``index_name`` before building its own, and names its index ``fiftyone-index-<dataset>`` (unique per table only,
while PostgreSQL index names are schema-wide); a temporary index is then dropped by those names.
"""

import contextlib
import re

import psycopg2
import pytest
from test_fo_similarity import EXACT, emb_dataset, pg, pg_tables  # noqa: F401 (fixtures: one server per module)

from ood_core import compute_knn_scores_with_index
from ood_core.errors import OODInputError

VEC24 = str([0.5] * 24)  # the vector literal of a 24-d row (emb_dataset's dimension)


def sql(pg, query, args=None):
    """Run one statement on its own committed connection; the rows, if it returns any."""
    with contextlib.closing(psycopg2.connect(pg.connection_string)) as conn:
        with conn, conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else None


def pg_indexes(pg):
    """``{index name: its table}`` in the public schema."""
    return dict(sql(pg, "SELECT indexname, tablename FROM pg_indexes WHERE schemaname = 'public'"))


def leave_no_brain_run(pg, ds, brain_key):
    if brain_key is not None and ds.has_brain_run(brain_key):
        ds.load_brain_results(brain_key, connection_string=pg.connection_string).cleanup(drop_table=True)
        ds.delete_brain_run(brain_key)


@pytest.fixture
def user_table(pg):
    """The user's own vector table ``my_vectors`` (same layout as the Brain's) with one row of theirs."""
    sql(pg, "CREATE EXTENSION IF NOT EXISTS vector")
    sql(pg, "CREATE TABLE my_vectors(id TEXT PRIMARY KEY, sample_id TEXT, embedding_vector VECTOR(24))")
    sql(pg, "INSERT INTO my_vectors VALUES ('mine', 'user-sample', %s)", (VEC24,))
    yield "my_vectors"
    sql(pg, "DROP TABLE IF EXISTS my_vectors")


@pytest.mark.parametrize("brain_key", [None, "kept_idx"])
def test_existing_table_name_is_refused_and_the_table_kept(pg, emb_dataset, user_table, brain_key):
    ds = emb_dataset[0]
    cs = pg.connection_string
    try:
        with pytest.raises(OODInputError, match=r"table_name='my_vectors' names an existing table "
                                                r"\(public\.my_vectors\).*leave table_name out"):
            compute_knn_scores_with_index(ds, "emb", "s2", reference="trusted", k=3, brain_key=brain_key,
                                          connection_string=cs, table_name=user_table, progress=False, **EXACT)
        # refused before anything was written: the user's table holds its one row, nothing else was made
        assert sql(pg, "SELECT id, sample_id FROM my_vectors") == [("mine", "user-sample")]
        assert pg_tables(pg) == ["my_vectors"] and pg_indexes(pg) == {"my_vectors_pkey": "my_vectors"}
        assert ds.get_field("s2") is None and not ds.has_run("s2") and ds.list_brain_runs() == []
        # names that do not exist yet still work, and a temporary index drops only them
        compute_knn_scores_with_index(ds, "emb", "s2", reference="trusted", k=3, connection_string=cs,
                                      table_name="my_new_vectors", index_name="my_new_idx", progress=False,
                                      **EXACT)
        assert ds.get_field("s2") is not None
        assert pg_tables(pg) == ["my_vectors"] and pg_indexes(pg) == {"my_vectors_pkey": "my_vectors"}
        assert sql(pg, "SELECT count(*) FROM my_vectors") == [(1,)]
    finally:
        leave_no_brain_run(pg, ds, brain_key)


def test_a_name_postgres_would_cut_is_refused(pg, emb_dataset, user_table):
    """PostgreSQL keeps 63 bytes of a name: a longer one can name the user's table."""
    ds = emb_dataset[0]
    long_name = "v" * 63
    sql(pg, f"ALTER TABLE my_vectors RENAME TO {long_name}")
    try:
        with pytest.raises(OODInputError, match="table_name='v{63}_more' is not a usable PostgreSQL name.*"
                                                "1 to 63 bytes"):
            compute_knn_scores_with_index(ds, "emb", "s5", reference="trusted", k=3, progress=False,
                                          connection_string=pg.connection_string, table_name=long_name + "_more",
                                          **EXACT)
        assert sql(pg, f"SELECT id FROM {long_name}") == [("mine",)]
        assert pg_tables(pg) == [long_name]
    finally:
        sql(pg, f"DROP TABLE IF EXISTS {long_name}")


@pytest.mark.parametrize("brain_key", [None, "kept_idx"])
def test_existing_index_name_is_refused_and_the_index_kept(pg, emb_dataset, brain_key):
    ds = emb_dataset[0]
    cs = pg.connection_string
    sql(pg, "CREATE TABLE orders(id SERIAL PRIMARY KEY, total NUMERIC)")
    sql(pg, "INSERT INTO orders(total) VALUES (9.5)")
    sql(pg, "CREATE INDEX orders_total_idx ON orders(total)")
    try:
        with pytest.raises(OODInputError, match=r"index_name='orders_total_idx' names an existing index "
                                                r"\(public\.orders_total_idx\).*leave index_name out"):
            compute_knn_scores_with_index(ds, "emb", "s3", reference="trusted", k=3, brain_key=brain_key,
                                          connection_string=cs, index_name="orders_total_idx", progress=False,
                                          **EXACT)
        # any relation of that name counts: tables and indexes share one namespace
        with pytest.raises(OODInputError, match="index_name='orders' names an existing table"):
            compute_knn_scores_with_index(ds, "emb", "s3", reference="trusted", k=3, brain_key=brain_key,
                                          connection_string=cs, index_name="orders", progress=False, **EXACT)
        assert pg_indexes(pg) == {"orders_pkey": "orders", "orders_total_idx": "orders"}
        assert pg_tables(pg) == ["orders"] and sql(pg, "SELECT total FROM orders") == [(9.5,)]
        assert ds.get_field("s3") is None and ds.list_brain_runs() == []
    finally:
        leave_no_brain_run(pg, ds, brain_key)
        sql(pg, "DROP TABLE orders")


@pytest.mark.parametrize("brain_key", [None, "ours"])
def test_default_names_never_touch_the_users_kept_similarity_index(pg, emb_dataset, brain_key):
    """The user's own Brain index of this dataset (default names) outlives our index built without names."""
    import fiftyone.brain as fob

    ds = emb_dataset[0]
    cs = pg.connection_string
    fob.compute_similarity(ds, embeddings="emb", brain_key="users_idx", backend="pgvector", connection_string=cs,
                           metric="cosine", progress=False, **EXACT)
    config = ds.get_brain_info("users_idx").config
    users = {config.index_name: config.table_name}
    assert set(pg_indexes(pg).items()) >= set(users.items())
    seen = []
    try:
        compute_knn_scores_with_index(ds, "emb", "s4", reference="trusted", k=3, brain_key=brain_key,
                                      connection_string=cs, progress=lambda *_: seen.append(pg_tables(pg)),
                                      **EXACT)
        # the user's vector index is still there, on the user's table, and the index answers queries
        assert set(pg_indexes(pg).items()) >= set(users.items())
        view = ds.load_brain_results("users_idx", connection_string=cs).sort_by_similarity(ds.first().id, k=5)
        assert len(view) == 5
        # our index had names of its own: unique, never the Brain's per-table default
        ours = sorted(set(seen[0]) - {config.table_name})
        prefix = "fiftyone_ood_tmp_" if brain_key is None else "fiftyone_ood_"
        assert len(ours) == 1 and re.fullmatch(prefix + "[0-9a-f]{32}", ours[0]), ours
        if brain_key is None:  # a temporary index is dropped, and only it
            assert pg_tables(pg) == [config.table_name]
        else:
            kept = ds.get_brain_info(brain_key).config
            assert (kept.table_name, kept.index_name) == (ours[0], ours[0] + "_idx")
            assert pg_indexes(pg)[kept.index_name] == kept.table_name
    finally:
        leave_no_brain_run(pg, ds, brain_key)
        leave_no_brain_run(pg, ds, "users_idx")


def _spoil(ds, n_ref, kind):
    """Make one embedding of ``emb_dataset`` unusable; returns its sample id."""
    import numpy as np

    values = ds.values("emb")
    i = 1 if kind.endswith("reference") else n_ref + 1  # a trusted sample, or a scored one outside the reference
    values[i] = {"NaN": np.full(24, np.nan, np.float32), "zero": np.zeros(24, np.float32),
                 "short": np.ones(5, np.float32)}[kind.split()[0]]
    ds.set_values("emb", values)
    return ds.values("id")[i]


@pytest.mark.parametrize("kind", ["NaN in the reference", "NaN in the scored view", "zero in the scored view",
                                  "short in the reference"])
def test_unusable_embeddings_are_refused_by_name_and_no_table_is_left(pg, emb_dataset, kind):
    """A NaN vector reached PostgreSQL ("NaN not allowed in vector", a raw database error), which broke the
    connection, so the temporary table could not be dropped and stayed in the user's database; an all-zero vector
    under the cosine metric gave NaN distances, a vector of another length a raw numpy error."""
    ds, _, n_ref = emb_dataset[:3]
    bad = _spoil(ds, n_ref, kind)
    expected = {"NaN": rf"NaN or infinite values in 'emb' \(ids \['{bad}'\]\).*exclude them",
                "zero": rf"all-zero embedding in 'emb' \(ids \['{bad}'\]\).*metric=\"euclidean\"",
                "short": r"'emb' have mixed shapes \[\(5,\), \(24,\)\]; recompute them"}[kind.split()[0]]
    with pytest.raises(OODInputError, match=expected):
        compute_knn_scores_with_index(ds, "emb", "s6", reference="trusted", k=3, connection_string=pg.connection_string,
                                      progress=False, **EXACT)
    assert pg_tables(pg) == [] and pg_indexes(pg) == {}
    assert ds.get_field("s6") is None and not ds.has_run("s6") and ds.list_brain_runs() == []


@pytest.mark.parametrize("made_by", ["fiftyone.brain", "this package"])
def test_embeddings_of_another_dimension_are_refused_and_the_index_still_answers(pg, emb_dataset, made_by):
    """A kept index queried with vectors of another dimension: a raw psycopg2 error, and the index's cached
    connection stayed in its failed transaction, so every later call with the index in the process failed
    ("current transaction is aborted") until a restart."""
    import fiftyone.brain as fob
    import numpy as np

    ds = emb_dataset[0]
    cs = pg.connection_string
    if made_by == "fiftyone.brain":
        fob.compute_similarity(ds, embeddings="emb", brain_key="idx", backend="pgvector", connection_string=cs,
                               metric="cosine", progress=False, **EXACT)
    else:
        compute_knn_scores_with_index(ds, "emb", "s7", reference="trusted", k=3, brain_key="idx",
                                      connection_string=cs, progress=False, **EXACT)
    values = ds.values("emb")
    try:
        ds.set_values("emb", [np.ones(16, np.float32) * (i + 1) for i in range(len(values))])
        expected = (r"similarity index 'idx' cannot take the 16-dimensional embeddings of 'emb' \(it holds "
                    r"24-dimensional vectors\).*build a new index"
                    if made_by == "fiftyone.brain" else  # the dimension recorded with the index: checked first
                    r"'emb' have 16 dimensions.*but the vectors of similarity index 'idx' have 24.*new index")
        with pytest.raises(OODInputError, match=expected):
            compute_knn_scores_with_index(ds, "emb", "s8", brain_key="idx", k=3, connection_string=cs,
                                          progress=False)
        assert ds.get_field("s8") is None
        ds.set_values("emb", values)  # the right vectors again: the same index answers
        compute_knn_scores_with_index(ds, "emb", "s8", brain_key="idx", k=3, connection_string=cs, progress=False)
        assert len(ds.exists("s8")) == len(values)
    finally:
        leave_no_brain_run(pg, ds, "idx")


def test_an_index_of_embeddings_recomputed_since_is_refused_and_a_renamed_key_is_named(pg, emb_dataset):
    """Embeddings of the same dimension written again (a field no embeddings run of this package records, so no
    settings to compare) were scored against the index's old vectors without a word; a key renamed away got the
    message about a missing reference."""
    import numpy as np

    ds, X = emb_dataset[:2]
    cs = pg.connection_string
    compute_knn_scores_with_index(ds, "emb", "s9", reference="trusted", k=3, brain_key="kp", connection_string=cs,
                                  progress=False, **EXACT)
    try:
        ds.set_values("emb", list(X + np.random.default_rng(1).normal(size=X.shape).astype(np.float32) * 3))
        with pytest.raises(OODInputError, match=r"similarity index 'kp' holds other vectors than 'emb' holds now "
                                                r"for \d+ scored samples.*delete_brain_run\('kp'\)"):
            compute_knn_scores_with_index(ds, "emb", "s10", brain_key="kp", k=3, progress=False)
        assert ds.get_field("s10") is None and not ds.has_run("s10")
        ds.rename_brain_run("kp", "kp_renamed")
        with pytest.raises(OODInputError, match=r"brain key 'kp' names no brain run on dataset .*"
                                                r"\['kp_renamed'\].*renamed one has its new key"):
            compute_knn_scores_with_index(ds, "emb", "s10", brain_key="kp", k=3, progress=False)
    finally:
        for key in ("kp", "kp_renamed"):
            leave_no_brain_run(pg, ds, key)


def test_an_index_of_object_patches_is_refused_by_name(pg, emb_dataset):
    """A Brain index of object patches (patches_field=...) has labels, not samples, as its points: passed as
    brain_key, its patch neighbours were taken for sample neighbours and scores were written without a word."""
    import fiftyone as fo
    import fiftyone.brain as fob

    from ood_core.fo.similarity import index_metric

    ds, X = emb_dataset[:2]
    cs = pg.connection_string
    box = [0.1, 0.1, 0.3, 0.3]
    ds.set_values("ground_truth", [fo.Detections(detections=[fo.Detection(label="a", bounding_box=box)])
                                   for _ in range(len(X))])
    trusted = ds.match_tags("trusted")
    patches = {sid: X[i][None] for i, sid in enumerate(trusted.values("id"))}  # 24-d, as the sample embeddings
    fob.compute_similarity(trusted, patches_field="ground_truth", embeddings=patches, brain_key="patch_idx",
                           backend="pgvector", connection_string=cs, metric="cosine", progress=False, **EXACT)
    table = ds.get_brain_info("patch_idx").config.table_name
    expected = (r"similarity index 'patch_idx' holds embeddings of object patches \(patches_field='ground_truth'\)"
                r".*not samples.*index of sample embeddings")
    try:
        for reference in (None, "trusted"):
            with pytest.raises(OODInputError, match=expected):
                compute_knn_scores_with_index(ds, "emb", "s11", brain_key="patch_idx", reference=reference, k=3,
                                              connection_string=cs, progress=False)
            assert ds.get_field("s11") is None and not ds.has_run("s11")
        # the form's check (config only, no connection) refuses it too; the user's index is left as it was
        with pytest.raises(OODInputError, match=expected):
            index_metric(ds.get_brain_info("patch_idx"))
        assert ds.has_brain_run("patch_idx") and sql(pg, f'SELECT count(*) FROM "{table}"') == [(len(patches),)]
    finally:
        leave_no_brain_run(pg, ds, "patch_idx")


def test_a_reference_the_index_lacks_samples_of_is_refused_with_the_count(pg, emb_dataset):
    """Reference samples added after a kept index was built: use_view silently left them out, so the scores came
    from the smaller reference the index held while the run recorded the whole reference's size."""
    import fiftyone as fo
    import numpy as np

    from ood_core import compute_ood_scores

    ds, X, n_ref = emb_dataset[:3]
    cs = pg.connection_string
    compute_knn_scores_with_index(ds, "emb", "s12", reference="trusted", k=3, brain_key="part", connection_string=cs,
                                  progress=False, **EXACT)
    rng = np.random.default_rng(3)
    new = [fo.Sample(filepath=f"/tmp/ood-sim-new-{i}.png", tags=["trusted"], emb=X[i] + rng.normal(size=24) * 0.1)
           for i in range(5)]
    new_ids = ds.add_samples(new, progress=False)
    try:
        with pytest.raises(OODInputError, match=rf"5 of the {n_ref + 5} reference samples with embeddings in 'emb' "
                                                r"are not in similarity index 'part' \(e\.g\. sample [0-9a-f]{24};.*"
                                                rf"other {n_ref} only.*add_to_index.*or build a new index"):
            compute_knn_scores_with_index(ds, "emb", "s13", reference="trusted", k=3, brain_key="part",
                                          progress=False)
        assert ds.get_field("s13") is None and not ds.has_run("s13")
        # the fix the message names: add them, and the index answers from the whole reference
        index = ds.load_brain_results("part", connection_string=cs)
        index.add_to_index(np.stack(ds.select(new_ids).values("emb")), np.array(new_ids))
        compute_knn_scores_with_index(ds, "emb", "s13", reference="trusted", k=3, brain_key="part", progress=False)
        compute_ood_scores(ds, "emb", "mem", method="knn", reference="trusted", k=3, neighbor_backend="sklearn")
        np.testing.assert_allclose(ds.values("s13"), ds.values("mem"), rtol=1e-5, atol=1e-6)
        assert ds.get_run_info("s13").config.calibration["num_reference"] == n_ref + 5
    finally:
        leave_no_brain_run(pg, ds, "part")


def test_a_reference_equal_to_the_kept_index_is_queried_without_an_id_filter(pg, emb_dataset):
    """A kept index with reference= was restricted with use_view even when it held exactly the reference: every
    query then carried all the reference's ids (pgvector: ``id = ANY(...)``, sent and parsed per query), and the
    reference is scored leave-one-out for the p-values, so the time grew with the square of its size (20,000
    samples: over 13 minutes). Such an index is now queried as is; one holding more than the reference is still
    restricted. Scores and p-values equal the in-memory k-NN either way."""
    import numpy as np

    from ood_core import compute_ood_scores

    ds, _, n_ref = emb_dataset[:3]
    cs = pg.connection_string
    untagged = ds.match_tags("trusted", bool=False)  # the reference is scored for the p-values only
    part = ds.match_tags("trusted").limit(n_ref // 2)
    compute_knn_scores_with_index(ds, "emb", "build", reference="trusted", k=5, brain_key="whole",
                                  connection_string=cs, progress=False, **EXACT)
    try:
        for name, reference, filtered in (("same", "trusted", False), ("part", part, True)):
            compute_knn_scores_with_index(untagged, "emb", name, reference=reference, k=5, brain_key="whole",
                                          progress=False)
            assert ds.get_run_info(name).config.similarity["id_filter"] is filtered
            compute_ood_scores(untagged, "emb", f"mem_{name}", method="knn", reference=reference, k=5,
                               neighbor_backend="sklearn")
            for suffix in ("", "_pvalue"):
                np.testing.assert_allclose(untagged.values(name + suffix), untagged.values(f"mem_{name}{suffix}"),
                                           rtol=1e-5, atol=1e-6)
    finally:
        leave_no_brain_run(pg, ds, "whole")


def test_an_index_answering_with_deleted_samples_is_refused_and_its_ids_remove_them(pg, emb_dataset):
    """Samples deleted after a kept index was built stay in the index: used alone (brain_key, no reference=) it
    answered with their vectors as trusted neighbours, and the scores were written without a word. The error
    carries their ids, and removing them from the index gives the scores of the remaining reference."""
    import numpy as np

    from ood_core import compute_ood_scores

    ds, _, n_ref = emb_dataset[:3]
    cs = pg.connection_string
    compute_knn_scores_with_index(ds, "emb", "s14", reference="trusted", k=3, brain_key="alone",
                                  connection_string=cs, progress=False, **EXACT)
    trusted = ds.match_tags("trusted")
    deleted = trusted.limit(n_ref // 4).values("id")
    ds.delete_samples(deleted)
    try:
        with pytest.raises(OODInputError, match=r"similarity index 'alone' answered with \d+ samples that are no "
                                                r"longer in dataset .*remove_from_index\(sample_ids=error\."
                                                r"sample_ids\)") as info:
            compute_knn_scores_with_index(ds, "emb", "s15", brain_key="alone", k=3, progress=False)
        assert ds.get_field("s15") is None and not ds.has_run("s15")
        assert info.value.sample_ids and set(info.value.sample_ids) <= set(deleted)
        index = ds.load_brain_results("alone", connection_string=cs)
        index.remove_from_index(sample_ids=deleted)
        compute_knn_scores_with_index(ds, "emb", "s15", brain_key="alone", k=3, progress=False)
        compute_ood_scores(ds, "emb", "mem15", method="knn", reference="trusted", k=3, neighbor_backend="sklearn")
        np.testing.assert_allclose(ds.values("s15"), ds.values("mem15"), rtol=1e-5, atol=1e-6)
    finally:
        leave_no_brain_run(pg, ds, "alone")


def test_an_index_whose_own_vectors_were_recomputed_is_refused_when_scoring_samples_outside_it(pg, emb_dataset):
    """The check of recomputed embeddings compared only scored samples the index holds: untrusted samples scored
    against an index of the trusted ones (the usual use) were never compared, so after the trusted embeddings
    were recomputed the index's old vectors answered without a word."""
    import numpy as np

    ds = emb_dataset[0]
    cs = pg.connection_string
    compute_knn_scores_with_index(ds, "emb", "s16", reference="trusted", k=3, brain_key="own", connection_string=cs,
                                  progress=False, **EXACT)
    trusted = ds.match_tags("trusted")
    untagged = ds.match_tags("trusted", bool=False)
    X = np.stack(trusted.values("emb"))
    trusted.set_values("emb", list(X + np.random.default_rng(2).normal(size=X.shape).astype(np.float32) * 3))
    try:
        with pytest.raises(OODInputError, match=r"similarity index 'own' holds other vectors than 'emb' holds now "
                                                r"for \d+ indexed samples"):
            compute_knn_scores_with_index(untagged, "emb", "s17", brain_key="own", k=3, progress=False)
        assert ds.get_field("s17") is None and not ds.has_run("s17")
    finally:
        leave_no_brain_run(pg, ds, "own")
