#!/usr/bin/env python
"""Embedding throughput: the product's pyramid extraction vs a plain timm forward.

Measures images/s on the same real images (Fashion-MNIST train images written
as PNG files to a temporary folder), same backbone, same batch size:

(a) ``PyramidExtractor(...).extract(paths)``: the product path, PNG decoding and
    preprocessing included, with ``num_workers`` 0 and 1;
(b) a plain timm classifier forward (``create_timm_model(name, num_classes=0)``,
    the classic pooled-feature forward) on pre-decoded tensors;
(c) the pyramid model forward (``PyramidExtractor.embed_tensor``: features-only
    forward + level pooling) on the same pre-decoded tensors;
(d) decoding + preprocessing alone (``load_rgb`` + the timm eval transform).

Each path is warmed up with one batch before timing. Process CPU time (user and
system) is reported per path: high system time is the glibc allocator
returning and re-faulting PyTorch's activation buffers (README "Measured results", embedding throughput). The
allocator settings are read at process start, so compare two runs::

    .venv/bin/python benchmarks/bench_extraction.py
    MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 \\
        .venv/bin/python benchmarks/bench_extraction.py
"""

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "LD_PRELOAD")


def parse_levels(text):
    if text is None or text.lower() in ("", "all", "none"):
        return None
    out = []
    for part in text.split(","):
        part = part.strip()
        out.append(int(part) if part.lstrip("-").isdigit() else part)
    return out


def write_pngs(num_images, folder):
    from PIL import Image

    from ood_core.demo import load_fashion_mnist

    images, _ = load_fashion_mnist("train")
    paths = []
    for i in range(num_images):
        path = os.path.join(folder, f"train_{i:05d}.png")
        Image.fromarray(images[i], mode="L").save(path)
        paths.append(path)
    return paths


class Timer:
    """Wall time plus this process's (and its finished children's) user/system CPU time."""

    def __enter__(self):
        self.t = time.perf_counter()
        self.cpu = os.times()
        return self

    def __exit__(self, *exc):
        end = os.times()
        self.seconds = time.perf_counter() - self.t
        self.user = (end.user - self.cpu.user) + (end.children_user - self.cpu.children_user)
        self.system = (end.system - self.cpu.system) + (end.children_system - self.cpu.children_system)
        return False


def batches(x, batch_size):
    for s in range(0, len(x), batch_size):
        yield x[s:s + batch_size]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--levels", default=None,
                        help="comma-separated level indices or module names (default: all levels)")
    parser.add_argument("--mode", default="pool", choices=("pool", "flatten"))
    parser.add_argument("--grid", type=int, default=1)
    parser.add_argument("--weights", default=None, help="weight source (see ood_core.weights); default: fallback chain")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per path; the best is reported")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for the main process (default: torch's own choice)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("timm").setLevel(logging.ERROR)

    import torch

    from ood_core.features import PyramidExtractor
    from ood_core.images import load_rgb
    from ood_core.weights import create_timm_model

    if args.threads:
        torch.set_num_threads(args.threads)
    print("bench_extraction: embedding throughput, product path vs plain timm forward")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} cpus "
          f"({affinity} usable), python {platform.python_version()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} inter-op, "
          f"MKL-DNN {torch.backends.mkldnn.is_available()}")
    for var in MALLOC_VARS:
        print(f"  {var}={os.environ.get(var, '(unset)')}")
    malloc_set = all(os.environ.get(v) for v in MALLOC_VARS[:2])
    print(f"  allocator settings of README 'Measured results': {'SET' if malloc_set else 'NOT set'}")
    print(f"  load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          "(other processes on the machine distort the numbers)")
    print(f"config: model={args.model} num_images={args.num_images} batch_size={args.batch_size} "
          f"levels={args.levels or 'all'} mode={args.mode} grid={args.grid} repeats={args.repeats} (best reported)")

    tmp = tempfile.mkdtemp(prefix="ood-bench-")
    results = []

    def record(name, n, timers):
        best = min(timers, key=lambda t: t.seconds)
        results.append({"path": name, "n": n, "seconds": best.seconds, "ips": n / best.seconds,
                        "user": best.user, "system": best.system,
                        "all": [round(n / t.seconds, 1) for t in timers]})
        print(f"  {name}: {n / best.seconds:.1f} images/s (runs: {results[-1]['all']})", flush=True)

    try:
        paths = write_pngs(args.num_images, tmp)
        n = len(paths)
        print(f"wrote {n} Fashion-MNIST PNG files (28x28 grayscale) to {tmp}")

        ext = PyramidExtractor(args.model, levels=parse_levels(args.levels), mode=args.mode, grid=args.grid,
                               weights=args.weights)
        print(f"pyramid: levels {ext.level_names} channels {ext.channels} dim {ext.dim} input "
              f"{ext.data_config['input_size']} weights={ext.weights_source.get('kind')}")
        bs = args.batch_size

        # (a) product path, decoding included.
        for nw in (0, 1):
            ext.extract(paths[:bs], batch_size=bs, num_workers=nw, progress=False)  # warm-up batch
            timers = []
            for _ in range(args.repeats):
                with Timer() as t:
                    res = ext.extract(paths, batch_size=bs, num_workers=nw, progress=False)
                timers.append(t)
            assert res.embeddings.shape == (n, ext.dim)
            record(f"(a) PyramidExtractor.extract, num_workers={nw}", n, timers)
        emb_product = res.embeddings

        # (d) decoding + preprocessing alone (main process), producing the pre-decoded tensors.
        _ = [ext.transform(load_rgb(p)) for p in paths[:bs]]
        timers = []
        for _ in range(args.repeats):
            with Timer() as t:
                tensors = torch.stack([ext.transform(load_rgb(p)) for p in paths])
            timers.append(t)
        record("(d) decode + preprocess only (load_rgb + timm transform)", n, timers)

        # (c) pyramid forward alone on pre-decoded tensors.
        ext.embed_tensor(tensors[:bs])
        timers = []
        for _ in range(args.repeats):
            with Timer() as t:
                emb = np.concatenate([ext.embed_tensor(x) for x in batches(tensors, bs)])
            timers.append(t)
        record("(c) pyramid forward only (embed_tensor, pre-decoded)", n, timers)
        max_diff = float(np.abs(emb - emb_product).max())

        # (b) plain timm forward on the same tensors.
        plain, source = create_timm_model(args.model, weights=args.weights, num_classes=0)
        plain.eval()
        with torch.inference_mode():
            plain(tensors[:bs])
            timers = []
            for _ in range(args.repeats):
                with Timer() as t:
                    out = [plain(x) for x in batches(tensors, bs)]
                timers.append(t)
        record(f"(b) plain timm forward (num_classes=0, {out[0].shape[1]}-d, pre-decoded)", n, timers)
        del plain
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nresults ({args.model}, {n} images, batch {bs}; malloc settings {'SET' if malloc_set else 'NOT set'}):")
    width = max(len(r["path"]) for r in results)
    print(f"  {'path'.ljust(width)}  {'images/s':>9}  {'seconds':>8}  {'user s':>7}  {'sys s':>7}")
    for r in results:
        print(f"  {r['path'].ljust(width)}  {r['ips']:9.1f}  {r['seconds']:8.2f}  {r['user']:7.2f}  {r['system']:7.2f}")
    print("  (user/sys = CPU seconds of this process and its finished DataLoader workers, best run)")
    by = {r["path"][:3]: r for r in results}
    print(f"  product path / plain timm forward: {by['(a)']['ips'] / by['(b)']['ips']:.2f} (num_workers=1)")
    print(f"  pyramid forward / plain timm forward: {by['(c)']['ips'] / by['(b)']['ips']:.2f}")
    print(f"  check: extract() vs embed_tensor() embeddings max |diff| = {max_diff:.2e}")
    print(f"  load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
