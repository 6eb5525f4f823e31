#!/usr/bin/env python
"""Benchmark: k-NN scoring time, Q queries against R references of dimension D.

Compares :class:`ood_core.neighbors.NeighborIndex` with faiss ``flat`` (exact),
``ivf`` and ``hnsw`` (approximate, default parameters), and the previous
detector path, scikit-learn ``NearestNeighbors(algorithm="brute")``. The k-NN
score of a query is its distance to the k-th nearest reference (KNNDetector).
Data are seeded float32 unit vectors (KNNDetector L2-normalises), two kinds:

- ``random``: isotropic Gaussian directions (no structure: the hard case for
  approximate indexes, every point is about equally far from every other);
- ``clustered``: ``max(10, R // 1000)`` random centres, points = centre + noise
  (spread 0.5 / sqrt(D) per coordinate), then normalised: embedding-like.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_knn.py --quick          # R=100k, Q=10k
    .venv/bin/python benchmarks/bench_knn.py                  # R=1M, Q=100k, D=512, k=50

Each method builds its index, then searches the queries in chunks until all Q
are done or ``--max-search-seconds`` is exceeded; a partial search is
extrapolated linearly to Q (search cost is linear in the number of queries)
and marked "extrapolated". scikit-learn runs on at most ``--sklearn-max-refs``
references and is extrapolated linearly in R as well (brute force is linear in
R), also marked. Recall@k and the relative error of the score (k-th distance)
are measured against the exact faiss flat results on the first
``--recall-queries`` queries. Peak RSS: per method (Linux VmHWM, reset before
each method) and for the whole process (``resource.getrusage``).
"""

import argparse
import gc
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ood_core.neighbors import NeighborIndex  # noqa: E402

GIB = 2**30


# --------------------------------------------------------------------------- memory and machine


_PEAK_BEFORE_RESETS = [0.0]  # clear_refs also resets what getrusage reports, so keep the max


def process_peak_rss_gib():
    """Peak resident set size of this process so far (getrusage reports KiB on Linux)."""
    now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    return max(now, _PEAK_BEFORE_RESETS[0])


def reset_peak_rss():
    """Reset Linux's VmHWM so :func:`recent_peak_rss_gib` covers one method (False: unsupported)."""
    _PEAK_BEFORE_RESETS[0] = process_peak_rss_gib()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def recent_peak_rss_gib():
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return float("nan")


def machine_info():
    import faiss
    import sklearn
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    pools = ", ".join(
        f"{p['internal_api']}({p.get('prefix', '?')}):{p['num_threads']}" for p in threadpool_info()
    )
    return [
        f"machine: {platform.platform()}, python {platform.python_version()}",
        f"cpu: {cpu}; os.cpu_count()={os.cpu_count()}, usable cores={affinity}; RAM {mem}",
        f"load average at start (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        " (the machine is shared: timings include contention)",
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, faiss {faiss.__version__} "
        f"(OpenMP threads {faiss.omp_get_max_threads()})",
        f"thread pools: {pools}",
    ]


# --------------------------------------------------------------------------- data


def unit_rows(num_rows, dim, kind, seed, centers=None, chunk=100_000):
    """Seeded float32 unit vectors, generated in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    out = np.empty((num_rows, dim), dtype=np.float32)
    for start in range(0, num_rows, chunk):
        stop = min(start + chunk, num_rows)
        block = rng.standard_normal((stop - start, dim), dtype=np.float32)
        if kind == "clustered":
            block *= np.float32(0.5 / np.sqrt(dim))
            block += centers[rng.integers(0, len(centers), stop - start)]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out


def make_data(kind, num_refs, num_queries, dim, seed):
    centers = None
    if kind == "clustered":
        n_centers = max(10, num_refs // 1000)
        centers = unit_rows(n_centers, dim, "random", seed + 100)
    refs = unit_rows(num_refs, dim, kind, seed, centers)
    queries = unit_rows(num_queries, dim, kind, seed + 1, centers)
    return refs, queries


# --------------------------------------------------------------------------- timing


def timed_search(search, queries, k, chunk, max_seconds):
    """Search ``queries`` in chunks until done or over ``max_seconds``.

    Returns ``(seconds, num_searched, dist, idx)`` for the searched prefix.
    """
    dists, idxs = [], []
    start = time.perf_counter()
    done = 0
    while done < len(queries):
        d, i = search(queries[done : done + chunk], k)
        dists.append(d)
        idxs.append(i)
        done += len(d)
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    return time.perf_counter() - start, done, np.concatenate(dists), np.concatenate(idxs)


def recall_at_k(idx, exact_idx):
    k = exact_idx.shape[1]
    hits = [len(np.intersect1d(a, b, assume_unique=True)) for a, b in zip(idx, exact_idx)]
    return float(np.sum(hits)) / (k * len(exact_idx))


def fmt_seconds(s):
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.2f} s"


def run_method(method, refs, queries, args, exact):
    """Build + search with one method; returns a result row (dict) and the exact results if flat."""
    num_q, k = len(queries), args.k
    gc.collect()
    per_method_rss = reset_peak_rss()
    note = []
    num_refs_used = len(refs)
    t0 = time.perf_counter()
    if method == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        num_refs_used = min(len(refs), args.sklearn_max_refs)
        model = NearestNeighbors(algorithm="brute").fit(refs[:num_refs_used])

        def search(q, kk):
            return model.kneighbors(q, n_neighbors=kk)

    else:
        model = NeighborIndex(
            backend="faiss", index=method, num_threads=args.num_threads, seed=args.seed
        ).fit(refs)

        def search(q, kk):
            return model.kneighbors(q, k=kk)

    build = time.perf_counter() - t0
    seconds, done, dist, idx = timed_search(
        search, queries, k, args.chunk, args.max_search_seconds
    )
    search_total = seconds * num_q / done
    if done < num_q:
        note.append(f"search extrapolated from {done:,} of {num_q:,} queries")
    if num_refs_used < len(refs):
        search_total *= len(refs) / num_refs_used
        note.append(
            f"sklearn run on R={num_refs_used:,} references, time extrapolated x"
            f"{len(refs) / num_refs_used:.0f} (linear in R)"
        )
    row = {
        "method": {"flat": "faiss flat (exact)", "ivf": "faiss IVF", "hnsw": "faiss HNSW",
                   "sklearn": "sklearn brute (exact)"}[method],
        "build": build,
        "searched": done,
        "search": seconds,
        "total": build + search_total,
        "qps": done / seconds,  # as measured (sklearn: at its reduced R)
        "rss": recent_peak_rss_gib() if per_method_rss else float("nan"),
        "note": "; ".join(note),
    }
    if method in ("ivf", "hnsw"):
        extra = (
            f"nlist={model.nlist_}, nprobe={model.nprobe_}"
            if method == "ivf"
            else f"M={model.hnsw_m}, efConstruction={model.ef_construction}, "
            f"efSearch={max(model.ef_search, k)}"
        )
        row["note"] = "; ".join(filter(None, [extra, row["note"]]))
    if exact is not None and method != "sklearn":
        n = min(len(exact[1]), done)
        row["recall"] = recall_at_k(idx[:n], exact[1][:n])
        rel = dist[:n, k - 1] / exact[0][:n, k - 1] - 1.0
        row["score_err"] = (float(np.median(rel)), float(np.max(rel)))
    result = (dist[: args.recall_queries], idx[: args.recall_queries]) if method == "flat" else None
    del model
    gc.collect()
    return row, result


def print_table(kind, rows, args, num_refs, num_queries):
    print(f"\n## data={kind}: R={num_refs:,} references, Q={num_queries:,} queries, "
          f"D={args.dim}, k={args.k}")
    header = (f"{'method':<22} {'build':>9} {'searched':>9} {'search':>9} {'queries/s':>10} "
              f"{'est. total for Q':>17} {'recall@k':>9} {'score err med/max':>19} "
              f"{'peak RSS':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        rec = f"{r['recall']:.3f}" if "recall" in r else "-"
        err = f"{r['score_err'][0]:.1e}/{r['score_err'][1]:.1e}" if "score_err" in r else "-"
        print(f"{r['method']:<22} {fmt_seconds(r['build']):>9} {r['searched']:>9,} "
              f"{fmt_seconds(r['search']):>9} {r['qps']:>10,.0f} {fmt_seconds(r['total']):>17} "
              f"{rec:>9} {err:>19} {r['rss']:>7.2f} G")
    for r in rows:
        if r["note"]:
            print(f"  {r['method']}: {r['note']}")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="R=100,000 and Q=10,000")
    parser.add_argument("--refs", type=int, default=None, help="R (default 1,000,000)")
    parser.add_argument("--queries", type=int, default=None, help="Q (default 100,000)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("-k", type=int, default=50)
    parser.add_argument("--data", nargs="+", default=["random", "clustered"],
                        choices=["random", "clustered"])
    parser.add_argument("--methods", nargs="+", default=["flat", "ivf", "hnsw", "sklearn"],
                        choices=["flat", "ivf", "hnsw", "sklearn"])
    parser.add_argument("--sklearn-max-refs", type=int, default=100_000,
                        help="scikit-learn runs on at most this many references (extrapolated)")
    parser.add_argument("--max-search-seconds", type=float, default=180.0,
                        help="stop a method's search after this long and extrapolate to Q")
    parser.add_argument("--chunk", type=int, default=2000, help="queries per timed search call")
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--num-threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    num_refs = args.refs or (100_000 if args.quick else 1_000_000)
    num_queries = args.queries or (10_000 if args.quick else 100_000)

    print(f"# bench_knn: {' '.join(sys.argv[1:]) or '(defaults)'}")
    for line in machine_info():
        print(line)
    print(f"R={num_refs:,} Q={num_queries:,} D={args.dim} k={args.k} methods={args.methods} "
          f"max-search-seconds={args.max_search_seconds} sklearn-max-refs="
          f"{args.sklearn_max_refs:,} seed={args.seed}")
    start = time.perf_counter()
    for kind in args.data:
        t0 = time.perf_counter()
        refs, queries = make_data(kind, num_refs, num_queries, args.dim, args.seed)
        print(f"\n[{kind}] data generated in {fmt_seconds(time.perf_counter() - t0)} "
              f"({refs.nbytes / GIB:.2f} GiB references)", flush=True)
        exact = None
        if "flat" not in args.methods:  # recall needs exact neighbours of a query subset
            nn = NeighborIndex(backend="faiss").fit(refs)
            exact = nn.kneighbors(queries[: args.recall_queries], k=args.k)
        rows = []
        for method in ["flat"] + [m for m in args.methods if m != "flat"]:
            if method not in args.methods:
                continue
            print(f"[{kind}] {method} ...", flush=True)
            row, flat_result = run_method(method, refs, queries, args, exact)
            if flat_result is not None:
                exact = flat_result
                row["recall"], row["score_err"] = 1.0, (0.0, 0.0)
            rows.append(row)
            print(f"[{kind}] {method}: build {fmt_seconds(row['build'])}, searched "
                  f"{row['searched']:,} queries in {fmt_seconds(row['search'])}", flush=True)
        print_table(kind, rows, args, num_refs, num_queries)
        del refs, queries
        gc.collect()
    print(f"\nprocess peak RSS (getrusage, max over the per-method resets): "
          f"{process_peak_rss_gib():.2f} GiB; wall time "
          f"{fmt_seconds(time.perf_counter() - start)}; load average at end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("Columns: build = index construction (IVF: k-means training + adding; flat: none); "
          "search = measured time for 'searched' queries; est. total = build + search "
          "scaled to all Q queries (and to all R for sklearn); recall@k and score error "
          "(k-th distance / exact - 1) on the first recall queries, vs faiss flat.")


if __name__ == "__main__":
    main()
