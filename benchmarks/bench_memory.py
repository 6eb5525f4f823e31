#!/usr/bin/env python
"""Peak memory of embedding extraction vs dataset size (10k vs 100k samples).

``compute_pyramid_embeddings`` streams: it reads the view in batches and writes
the embeddings to the dataset every ``chunk_size`` items, so its memory should
depend on the batch/chunk sizes and the embedding dimension, not on the number
of samples. This script measures it.

Real Fashion-MNIST images (train then test, up to 70k) are written once as PNG
files to a temporary folder; sample ``i`` of a dataset uses file ``i mod M``
(M = number of distinct files, stated in the output). For each size N a fresh
child process (this script with ``--child N``) creates a FiftyOne dataset
``ood-bench-mem-*`` (FiftyOne's own embedded MongoDB unless
FIFTYONE_DATABASE_URI is already set), records its RSS after dataset creation
and after importing torch and loading the model, then runs
``compute_pyramid_embeddings`` over the whole dataset with a progress callable
that samples RSS (``/proc/self/status``) after every batch. It reports the
child's peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``, whole process life),
the peak RSS of the extraction phase alone (``VmHWM`` reset through
``/proc/self/clear_refs`` just before the call, when the kernel allows it),
RSS at 10/50/90% of the progress, the DataLoader worker's RSS and peak, the
MongoDB server's RSS, wall time, images/s and a count of the stored embeddings.
The datasets are deleted at the end, also on failure.

The child runs with 1 torch thread (``torch.set_num_threads(1)``,
OMP_NUM_THREADS=1) and ``num_workers=1``, leaving a core free on the machine.

Command (results in benchmarks/results/bench_memory.txt)::

    cd /work/main && MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 \\
        nice -n 5 .venv/bin/python benchmarks/bench_memory.py

Smoke run: add ``--sizes 300,1000``.
"""

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "LD_PRELOAD")
PREFIX = "ood-bench-mem-"
FIELD = "bench_mem_embeddings"
RESULT_TAG = "BENCH_MEMORY_RESULT "
MARKS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


# --------------------------------------------------------------------------- helpers

def status_kib(key, pid="self"):
    """A ``/proc/<pid>/status`` field in KiB (VmRSS, VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def mib(kib):
    return None if kib is None else kib / 1024.0


def fmt(x, width=8, digits=1):
    return f"{'n/a':>{width}}" if x is None else f"{x:{width}.{digits}f}"


def maxrss_mib(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: KiB


def file_path(folder, i):
    return os.path.join(folder, f"fmnist_{i:05d}.png")


def write_pngs(num_files, folder):
    """Fashion-MNIST train images then test images, as ``fmnist_<i>.png``; returns the count."""
    from PIL import Image

    from ood_core.demo import load_fashion_mnist

    i = 0
    for split in ("train", "test"):
        if i >= num_files:
            break
        images, _ = load_fashion_mnist(split)
        for img in images[: num_files - i]:
            Image.fromarray(img, mode="L").save(file_path(folder, i))
            i += 1
    return i


def find_mongod_pids():
    """PIDs of the mongod serving FiftyOne's embedded database (empty with an external URI)."""
    try:
        import fiftyone as fo
        import psutil
    except ImportError:
        return []
    if fo.config.database_uri:
        return []
    db_dir = os.path.realpath(fo.config.database_dir)
    pids = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if (p.info["name"] or "").startswith("mongod") and (db_dir in cmd or fo.config.database_dir in cmd):
                pids.append(p.pid)
        except Exception:
            pass
    return pids


def worker_pids():
    """DataLoader worker processes: children forked from this process (same command line)."""
    try:
        import psutil
    except ImportError:
        return []
    me = psutil.Process()
    try:
        mine = me.cmdline()
        return [c.pid for c in me.children() if c.cmdline() == mine]
    except Exception:
        return []


def sum_rss_kib(pids):
    vals = [status_kib("VmRSS", p) for p in pids]
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


# --------------------------------------------------------------------------- child

def run_child(args):
    n = args.child
    t_start = time.perf_counter()
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("timm").setLevel(logging.ERROR)
    out = {"n": n, "pid": os.getpid()}

    def note(key, extra=""):
        rss = mib(status_kib("VmRSS"))
        out[key] = rss
        print(f"  [child N={n}] {key}: RSS {rss:.1f} MiB, peak so far {maxrss_mib():.1f} MiB"
              f"{extra} (t={time.perf_counter() - t_start:.1f}s)", flush=True)

    note("rss_start_mib")
    import fiftyone as fo

    fo.config.show_progress_bars = False
    note("rss_after_import_fiftyone_mib")

    name = f"{PREFIX}{n}-{os.getpid()}"
    dataset = None
    try:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
        t0 = time.perf_counter()
        dataset = fo.Dataset(name)
        step = 10000
        for s in range(0, n, step):
            dataset.add_samples(
                [fo.Sample(filepath=file_path(args.folder, i % args.num_files)) for i in range(s, min(n, s + step))],
                progress=False,
            )
        out["create_seconds"] = time.perf_counter() - t0
        assert len(dataset) == n, (len(dataset), n)
        gc.collect()
        note("rss_after_dataset_mib", f", {len(dataset)} samples in {out['create_seconds']:.1f}s")
        mongo = find_mongod_pids()
        out["mongod_pids"] = mongo
        out["mongod_rss_after_dataset_mib"] = mib(sum_rss_kib(mongo))

        import torch

        torch.set_num_threads(args.threads)
        from ood_core.features import PyramidExtractor
        from ood_core.fo.embeddings import DEFAULT_GRID, default_levels

        ext = PyramidExtractor(args.model, levels=default_levels(args.model), mode="pool", grid=DEFAULT_GRID)
        out["dim"] = ext.dim
        out["levels"] = ext.level_names
        out["weights"] = ext.weights_source.get("kind")
        out["torch_threads"] = torch.get_num_threads()
        del ext
        gc.collect()
        note("rss_after_torch_model_mib", f", torch threads {torch.get_num_threads()}")

        # Reset the kernel's peak-RSS counter (VmHWM) so the extraction phase can be measured alone.
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            out["hwm_reset"] = True
        except OSError as e:
            out["hwm_reset"] = False
            print(f"  [child N={n}] could not reset VmHWM ({e}); extraction peak = process peak", flush=True)
        out["hwm_after_reset_mib"] = mib(status_kib("VmHWM"))
        print(f"  [child N={n}] VmHWM after reset: {fmt(out['hwm_after_reset_mib'], 0)} MiB", flush=True)

        samples = []
        state = {"next": 0, "max_rss": 0, "workers": None, "max_worker": 0, "batches": 0}
        t_run = time.perf_counter()

        def on_progress(done, total):
            state["batches"] += 1
            rss = status_kib("VmRSS") or 0
            state["max_rss"] = max(state["max_rss"], rss)
            if state["workers"] is None or state["batches"] % 50 == 0:
                state["workers"] = worker_pids()
            wrss = sum_rss_kib(state["workers"]) if state["workers"] else None
            if wrss:
                state["max_worker"] = max(state["max_worker"], wrss)
            while state["next"] < len(MARKS) and done * 100 >= MARKS[state["next"]] * total:
                pct = MARKS[state["next"]]
                row = {"pct": pct, "done": done, "seconds": time.perf_counter() - t_run, "rss_mib": mib(rss),
                       "worker_rss_mib": mib(wrss), "mongod_rss_mib": mib(sum_rss_kib(mongo))}
                samples.append(row)
                print(f"  [child N={n}] {pct:3d}% ({done}/{total}) t={row['seconds']:.0f}s RSS {row['rss_mib']:.1f} "
                      f"MiB, worker {fmt(row['worker_rss_mib'], 0)} MiB, mongod {fmt(row['mongod_rss_mib'], 0)} MiB, "
                      f"{done / max(row['seconds'], 1e-9):.1f} img/s", flush=True)
                state["next"] += 1

        from ood_core import compute_pyramid_embeddings

        res = compute_pyramid_embeddings(
            dataset, FIELD, model_name=args.model, batch_size=args.batch_size, num_workers=args.num_workers,
            chunk_size=args.chunk_size, progress=on_progress, overwrite=True,
        )
        out["run_seconds"] = time.perf_counter() - t_run
        out["ips"] = n / out["run_seconds"]
        out["rss_end_mib"] = mib(status_kib("VmRSS"))
        out["peak_rss_mib"] = maxrss_mib()  # whole child life
        out["extraction_peak_mib"] = mib(status_kib("VmHWM"))
        out["max_sampled_rss_mib"] = mib(state["max_rss"])
        out["worker_peak_sampled_mib"] = mib(state["max_worker"]) if state["max_worker"] else None
        out["children_maxrss_mib"] = maxrss_mib(resource.RUSAGE_CHILDREN)  # reaped children: the DataLoader worker
        out["mongod_rss_end_mib"] = mib(sum_rss_kib(mongo))
        out["samples"] = samples
        out["num_embedded"] = res["num_embedded"]
        out["count_field"] = dataset.count(FIELD)
        first = dataset.first()[FIELD]
        out["stored_dim"] = None if first is None else int(len(first))
        out["ok"] = out["count_field"] == n and res["num_embedded"] == n and out["stored_dim"] == res["dim"]
        print(f"  [child N={n}] done: {n} images in {out['run_seconds']:.1f}s ({out['ips']:.1f} img/s); "
              f"peak RSS {out['peak_rss_mib']:.1f} MiB (extraction phase {fmt(out['extraction_peak_mib'], 0)} MiB); "
              f"count({FIELD})={out['count_field']} dim {out['stored_dim']}", flush=True)
    finally:
        if dataset is not None or fo.dataset_exists(name):
            try:
                fo.delete_dataset(name)
                print(f"  [child N={n}] deleted dataset {name}", flush=True)
            except Exception as e:  # pragma: no cover
                print(f"  [child N={n}] could not delete {name}: {e}", flush=True)
    out["child_seconds"] = time.perf_counter() - t_start
    print(RESULT_TAG + json.dumps(out), flush=True)


def run_cleanup():
    import fiftyone as fo

    left = [d for d in fo.list_datasets() if d.startswith(PREFIX)]
    for d in left:
        fo.delete_dataset(d)
    print(f"cleanup: {len(left)} leftover {PREFIX}* dataset(s) deleted{': ' + ', '.join(left) if left else ''}",
          flush=True)


# --------------------------------------------------------------------------- parent

def run_size(args, n, folder, num_files):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(n), "--folder", folder,
           "--num-files", str(num_files), "--model", args.model, "--batch-size", str(args.batch_size),
           "--num-workers", str(args.num_workers), "--chunk-size", str(args.chunk_size),
           "--threads", str(args.threads)]
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["MKL_NUM_THREADS"] = str(args.threads)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")  # silences the MongoDB version notice
    result = None
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    for line in proc.stdout:
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
        else:
            print(line, end="", flush=True)
    rc = proc.wait()
    if rc != 0 or result is None:
        raise RuntimeError(f"child for N={n} failed (exit code {rc})")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated dataset sizes")
    parser.add_argument("--max-files", type=int, default=70000,
                        help="distinct PNG files (Fashion-MNIST train+test, at most 70000); "
                             "the count used is min(this, largest size)")
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the child")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--num-files", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cleanup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cleanup:
        return run_cleanup()
    if args.child is not None:
        return run_child(args)

    t_total = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    num_files = min(args.max_files, 70000, max(sizes))
    from importlib.metadata import (
        version,  # the parent imports no torch: its RSS seeds the child's ru_maxrss
    )

    print("bench_memory: peak RSS of compute_pyramid_embeddings vs dataset size")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} cpus "
          f"({affinity} usable), python {platform.python_version()}, torch {version('torch')}, fiftyone {version('fiftyone')}")
    for var in MALLOC_VARS:
        print(f"  {var}={os.environ.get(var, '(unset)')}")
    malloc_set = all(os.environ.get(v) for v in MALLOC_VARS[:2])
    print(f"  allocator settings of docs/OFFLINE.md: {'SET' if malloc_set else 'NOT set'}")
    print(f"  nice value: {os.nice(0)}")
    print(f"  load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          "(other processes on the machine distort the timings)")
    print(f"  database: {'FIFTYONE_DATABASE_URI set (external)' if os.environ.get('FIFTYONE_DATABASE_URI') else 'FiftyOne embedded MongoDB'}")
    print(f"config: sizes={sizes} model={args.model} (deepest level, pool grid 2) batch_size={args.batch_size} "
          f"chunk_size={args.chunk_size} num_workers={args.num_workers} dtype=float32")
    print(f"  each size runs in a fresh child process with {args.threads} torch thread(s) "
          f"(torch.set_num_threads({args.threads}), OMP_NUM_THREADS={args.threads}) and num_workers={args.num_workers}, "
          "leaving a core free")

    tmp = tempfile.mkdtemp(prefix="ood-bench-mem-")
    results = []
    try:
        t0 = time.perf_counter()
        m = write_pngs(num_files, tmp)
        print(f"wrote {m} distinct Fashion-MNIST PNG files (28x28 grayscale, train then test) to {tmp} "
              f"in {time.perf_counter() - t0:.1f}s; sample i uses file i mod {m}"
              + (f" (files are reused for N > {m})" if max(sizes) > m else ""), flush=True)
        for n in sizes:
            print(f"\nN={n}: (parent RSS {fmt(mib(status_kib('VmRSS')), 0)} MiB at spawn; a child's ru_maxrss "
                  "starts from its parent's RSS at fork)", flush=True)
            results.append(run_size(args, n, tmp, m))
    finally:
        subprocess.run([sys.executable, os.path.abspath(__file__), "--cleanup"], cwd=REPO, check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    def at(r, pct, key="rss_mib"):
        for s in r["samples"]:
            if s["pct"] == pct:
                return s[key]
        return None

    r0 = results[0]
    print(f"\nmodel {args.model}: levels {r0['levels']}, embedding dim {r0['dim']}, weights {r0['weights']}, "
          f"torch threads in child {r0['torch_threads']}")
    print("\nresults (RSS of the child process in MiB; peak = getrusage ru_maxrss over the child's life):")
    hdr = (f"  {'N':>7}  {'peak':>7}  {'extr.pk':>7}  {'dataset':>7}  {'+model':>7}  {'@10%':>7}  {'@50%':>7}  "
           f"{'@90%':>7}  {'end':>7}  {'worker':>7}  {'mongod':>7}  {'seconds':>8}  {'img/s':>6}  {'stored':>7}")
    print(hdr)
    for r in results:
        print(f"  {r['n']:7d}  {fmt(r['peak_rss_mib'], 7)}  {fmt(r['extraction_peak_mib'], 7)}  "
              f"{fmt(r['rss_after_dataset_mib'], 7)}  {fmt(r['rss_after_torch_model_mib'], 7)}  "
              f"{fmt(at(r, 10), 7)}  {fmt(at(r, 50), 7)}  {fmt(at(r, 90), 7)}  {fmt(r['rss_end_mib'], 7)}  "
              f"{fmt(r['children_maxrss_mib'], 7)}  {fmt(r['mongod_rss_end_mib'], 7)}  {r['run_seconds']:8.1f}  "
              f"{r['ips']:6.1f}  {r['count_field']:7d}{'' if r['ok'] else ' MISMATCH'}")
    print("  peak = child peak RSS (whole life); extr.pk = peak RSS of the extraction phase alone (VmHWM reset "
          "before the call)" + ("" if all(r["hwm_reset"] for r in results) else " [reset FAILED: = process peak]"))
    print("  dataset / +model = RSS after creating the dataset / after importing torch and loading the model; "
          "@x% = RSS at x% of the progress; end = after the call")
    print("  worker = peak RSS of the DataLoader worker (getrusage RUSAGE_CHILDREN; counts the pages it shares "
          "with the child after fork); mongod = MongoDB server RSS "
          "at the end (a separate process, not part of the peak)")
    print("  seconds / img/s = the compute_pyramid_embeddings call; stored = count of the embeddings field "
          f"(checked == N, dim {r0['dim']})")
    print("\nRSS over the run (MiB; child / worker / mongod):")
    for r in results:
        series = ", ".join(f"{s['pct']}%: {s['rss_mib']:.0f}/{fmt(s['worker_rss_mib'], 0, 0).strip()}/"
                           f"{fmt(s['mongod_rss_mib'], 0, 0).strip()}" for s in r["samples"])
        print(f"  N={r['n']}: {series}")
    if len(results) >= 2:
        lo, hi = results[0], results[-1]
        print(f"\nN {hi['n']} / {lo['n']} = {hi['n'] / lo['n']:.0f}x samples:")
        print(f"  peak RSS ratio            {hi['peak_rss_mib'] / lo['peak_rss_mib']:.3f} "
              f"({lo['peak_rss_mib']:.1f} -> {hi['peak_rss_mib']:.1f} MiB, "
              f"{hi['peak_rss_mib'] - lo['peak_rss_mib']:+.1f} MiB)")
        if lo.get("extraction_peak_mib") and hi.get("extraction_peak_mib"):
            print(f"  extraction-phase peak     {hi['extraction_peak_mib'] / lo['extraction_peak_mib']:.3f} "
                  f"({lo['extraction_peak_mib']:.1f} -> {hi['extraction_peak_mib']:.1f} MiB, "
                  f"{hi['extraction_peak_mib'] - lo['extraction_peak_mib']:+.1f} MiB)")
        if lo.get("children_maxrss_mib") and hi.get("children_maxrss_mib"):
            print(f"  DataLoader worker peak    {hi['children_maxrss_mib'] / lo['children_maxrss_mib']:.3f} "
                  f"({lo['children_maxrss_mib']:.1f} -> {hi['children_maxrss_mib']:.1f} MiB)")
        a10, a90 = at(hi, 10), at(hi, 90)
        if a10 and a90:
            print(f"  RSS drift within N={hi['n']} (10% -> 90%): {a90 - a10:+.1f} MiB")
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"total runtime: {time.perf_counter() - t_total:.0f}s")


if __name__ == "__main__":
    main()
