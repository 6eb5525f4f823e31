#!/usr/bin/env python
"""Benchmark: k-NN OOD scoring through a pgvector similarity index vs in memory.

End to end on a real FiftyOne dataset: ``R`` reference samples (tag
``trusted``) and ``Q`` query samples with seeded, clustered ``D``-dim
embeddings (the data of ``bench_knn.py``), scored these ways:

1. ``compute_ood_scores(method="knn", neighbor_backend="faiss")``: in memory,
   exact (faiss is the product's default neighbour backend; ``method="knn"``
   is named, as the product's default method is another one);
2. ``compute_knn_scores_with_index(backend="pgvector", index_type="hnsw")``:
   PostgreSQL 16 + pgvector 0.6 (``pgserver`` wheel) on 127.0.0.1, started by
   ``tests/pg_loopback.py``; HNSW with pgvector's defaults (m=16,
   ef_construction=64) and ``hnsw_ef_search`` = ``--ef-search``;
3. the index of 2., kept under a brain key, reused without ``reference=``
   (the index defines the reference; p-values from the scored samples' own
   scores) and with ``reference="trusted"`` (the index holds exactly the
   reference: queried without an id filter; the reference is scored
   leave-one-out for the p-values);
4. the same as 2. with an exact scan (``index_type="ivfflat", ivfflat_lists=1``),
   on at most ``--exact-queries`` queries (a full scan per query; 0 skips it).

With ``reference=`` every reference sample is also queried once (its
leave-one-out score, for the p-values), so those paths run Q + R queries.

Reported per path: seconds for upload + index build, seconds and queries/s
for scoring (all queries), and agreement with the in-memory exact scores (max / mean
relative difference; an approximate index can only miss neighbours, so its
score is never below the exact one). The server is on the same 2-core
machine, so this measures the code path, not a scaled-out database.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_similarity.py                 # R=20k, Q=2k, D=256, k=50
    .venv/bin/python benchmarks/bench_similarity.py --refs 100000 --queries 5000
    .venv/bin/python benchmarks/bench_similarity.py --refs 5000 --queries 500 --dim 32   # about a minute
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refs", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--ef-search", type=int, default=100)
    parser.add_argument("--exact-queries", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args(argv)

    import fiftyone as fo
    from bench_knn import make_data
    from pg_loopback import LoopbackPostgres

    from ood_core import compute_knn_scores_with_index, compute_ood_scores

    print("bench_similarity: k-NN scoring through a pgvector similarity index vs in memory")
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine)")
    print(f"config: R={args.refs} Q={args.queries} D={args.dim} k={args.k} ef_search={args.ef_search} "
          f"batch={args.batch_size} data=clustered unit vectors (bench_knn.make_data, seed 0)")

    refs, queries = make_data("clustered", args.refs, args.queries, args.dim, 0)
    name = f"ood-bench-similarity-{os.getpid()}"
    server = None
    rows = []
    try:
        t = time.perf_counter()
        ds = fo.Dataset(name)
        n = len(refs) + len(queries)
        ds.add_samples([fo.Sample(filepath=f"/nonexistent/{i}.png", tags=["trusted"] if i < len(refs) else ["query"])
                        for i in range(n)], progress=False)
        ds.set_values("emb", list(np.vstack([refs, queries])), progress=False)
        print(f"dataset with {n} samples and embeddings: {time.perf_counter() - t:.1f} s")
        qview = ds.match_tags("query")

        t = time.perf_counter()
        compute_ood_scores(qview, "emb", "mem", method="knn", reference="trusted", k=args.k,
                           neighbor_backend="faiss")
        mem_s = time.perf_counter() - t
        exact = np.array(qview.values("mem"))
        rows.append(("in memory, faiss flat (exact)", None, mem_s, len(exact), 0.0, 0.0))
        print(f"  in memory: {mem_s:.1f} s (read embeddings + fit + score + write)", flush=True)

        server = LoopbackPostgres().start()
        print(f"pgvector server on {server.connection_string}")

        def run(label, view, reference="trusted", **kw):
            phases = {}

            def progress(done, total):
                # the upload reports first (total = R); its last call ends upload + index build
                if total == args.refs and done == total and "upload_end" not in phases:
                    phases["upload_end"] = time.perf_counter()

            t0 = time.perf_counter()
            compute_knn_scores_with_index(view, "emb", f"pg_{label}", reference=reference, k=args.k,
                                          batch_size=args.batch_size, progress=progress,
                                          connection_string=server.connection_string, **kw)
            total = time.perf_counter() - t0
            upload = phases.get("upload_end", t0) - t0
            scores = np.array(view.values(f"pg_{label}"))
            return total, upload, scores

        total, upload, hnsw = run("hnsw", qview, brain_key="bench_kept", index_type="hnsw",
                                  hnsw_ef_search=args.ef_search)
        rel = (hnsw - exact) / exact
        rows.append((f"pgvector HNSW (ef_search={args.ef_search})", upload, total - upload, len(hnsw) + args.refs,
                     float(np.abs(rel).max()), float(np.abs(rel).mean())))
        print(f"  pgvector hnsw: {total:.1f} s total, of which upload+build {upload:.1f} s; "
              f"min(score - exact) = {float((hnsw - exact).min()):.2e}", flush=True)

        for label, reference, n_queries in (("kept_noref", None, len(exact)),
                                            ("kept_ref", "trusted", len(exact) + args.refs)):
            total, _, kept = run(label, qview, reference=reference, brain_key="bench_kept")
            rel = (kept - exact) / exact
            rows.append((f"  same index kept, reference={reference!r}", None, total, n_queries,
                         float(np.abs(rel).max()), float(np.abs(rel).mean())))
            print(f"  kept index, reference={reference!r}: {total:.1f} s; same scores as the new index: "
                  f"{bool(np.array_equal(kept, hnsw))}", flush=True)

        if args.exact_queries > 0:
            sub = qview.limit(args.exact_queries)
            total, upload, flat = run("exact", sub, index_type="ivfflat", ivfflat_lists=1)
            ex_sub = np.array(sub.values("mem"))
            rel = (flat - ex_sub) / ex_sub
            rows.append(("pgvector exact scan (ivfflat, 1 list)", upload, total - upload, len(flat) + args.refs,
                         float(np.abs(rel).max()), float(np.abs(rel).mean())))
    finally:
        if server is not None:
            if fo.dataset_exists(name) and ds.has_brain_run("bench_kept"):
                ds.load_brain_results("bench_kept", connection_string=server.connection_string).cleanup(
                    drop_table=True)
                ds.delete_brain_run("bench_kept")
            server.stop()
        if fo.dataset_exists(name):
            fo.delete_dataset(name)

    print_results(args, rows)

def print_results(args, rows):
    print(f"\nresults (R={args.refs}, D={args.dim}, k={args.k}):")
    print(f"  {'path':40s} {'upload+build s':>14s} {'score s':>8s} {'queries':>8s} {'queries/s':>10s} "
          f"{'max rel diff':>12s} {'mean rel diff':>13s}")
    for label, up, score_s, nq, mx, mean in rows:
        up_txt = "-" if up is None else f"{up:.1f}"
        print(f"  {label:40s} {up_txt:>14s} {score_s:8.1f} {nq:8d} {nq / score_s:10.1f} {mx:12.2e} {mean:13.2e}")
    print("  (in memory: one step that reads embeddings, fits faiss and scores; pgvector: queries are one SQL "
          "round trip each; with reference= the R reference samples are queried too, leave-one-out, for the "
          "p-values)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
