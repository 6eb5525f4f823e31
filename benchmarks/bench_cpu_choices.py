#!/usr/bin/env python
"""CPU-speed choices of the pyramid extraction loop, measured one at a time.

The project keeps a speed-motivated choice only if it is measured. Each
"choice" below compares its variants on the same real images (Fashion-MNIST
train images written as PNG files to a temporary folder, via
``bench_extraction.write_pngs``), with the product's default embedding
settings (``tf_efficientnet_lite0`` bundled weights, levels ``[-1]`` = deepest
only, ``mode="pool"``, ``grid=2``) unless the choice says otherwise:

1. grad mode: ``torch.inference_mode()`` vs ``torch.no_grad()`` vs a plain
   forward with autograd on, of ``PyramidExtractor.model`` + ``combine_levels``
   on pre-decoded tensors (the product uses inference_mode in ``embed_tensor``);
2. memory format: channels-last model and input vs contiguous (NCHW), on
   pre-decoded tensors; the embeddings are compared (max |diff|);
3. batch size 1, 8, 16, 32, 64 of ``PyramidExtractor.extract(paths,
   num_workers=1)`` (PNG decoding included; batch sizes 1 and 8 embed only
   ``--small-batch-images`` images per run to bound the runtime);
4. DataLoader workers 0, 1, 2 of ``extract(paths, batch_size=--batch-size)``;
5. torch intra-op threads 1 vs 2 (``torch.set_num_threads``) on the pyramid
   forward (``embed_tensor``) on pre-decoded tensors; restored afterwards;
6. all 5 levels (``levels=None``) in one features-only forward vs 5
   single-level extractors (each runs its own forward up to its level), on
   pre-decoded tensors; the deepest-only product default is a reference row.

Every variant is warmed up with one batch; then the variants of a choice are
interleaved (A, B, A, B, ...) ``--repeats`` times and the best run is reported,
because the machine has 2 cores and other work may run concurrently (load
average printed at start and end). Process CPU time (user, system; finished
DataLoader workers included) is reported per variant, and so is the CPU time
other processes of the machine used during the run (``/proc/stat`` busy time
minus this process's): a large "others" value marks a run that competed for
the cores, so its number is pessimistic.

The final table gives images/s, the ratio to the product's current variant of
the same choice, and a "keep?" hint computed from the numbers: the product's
variant is "keep (measured)" only when it is more than 5 % faster than every
alternative; an alternative more than 5 % faster than it is flagged.

Run with the allocator settings of docs/OFFLINE.md (read at process start)::

    cd /work/main && MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 \\
        nice -n 5 .venv/bin/python benchmarks/bench_cpu_choices.py

(output saved in benchmarks/results/bench_cpu_choices.txt). The default of 160
images per run keeps the whole run under ~15 minutes while other work shares
the 2 cores (384 images took over 20 minutes there).
"""

import argparse
import copy
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

from benchmarks.bench_extraction import MALLOC_VARS, Timer, batches, write_pngs  # noqa: E402

MARGIN = 0.05  # a variant must be >5 % faster to count as a measured gain
ALL_CHOICES = (1, 2, 3, 4, 5, 6)


def loadavg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_busy_seconds():
    """CPU-seconds all processes of the machine have been busy (``/proc/stat``); None if unavailable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class LoadTimer(Timer):
    """Timer that also records the CPU-seconds *other* processes used meanwhile (``.others``)."""

    def __enter__(self):
        self.busy = machine_busy_seconds()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        busy = machine_busy_seconds()
        self.others = (None if busy is None or self.busy is None
                       else max(0.0, busy - self.busy - self.user - self.system))
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--num-images", type=int, default=160,
                        help="images per timed run (default 160 keeps the run under ~15 min on 2 busy cores)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timed runs per variant; best reported")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="batch size of every choice except 3 (default: the product's 32)")
    parser.add_argument("--small-batch-images", type=int, default=32,
                        help="images per run for batch sizes 1 and 8 in choice 3 (they are slow)")
    parser.add_argument("--grid", type=int, default=2, help="pool grid (default: the product's 2)")
    parser.add_argument("--weights", default=None, help="weight source (see ood_core.weights); default: fallback chain")
    parser.add_argument("--choices", default=",".join(map(str, ALL_CHOICES)),
                        help="comma-separated subset of the choices 1-6 to run (default: all)")
    args = parser.parse_args(argv)
    choices = [int(c) for c in args.choices.split(",") if c.strip()]
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("timm").setLevel(logging.ERROR)

    import torch

    from ood_core.features import PyramidExtractor, combine_levels
    from ood_core.fo.embeddings import DEFAULT_GRID, DEFAULT_LEVELS
    from ood_core.images import load_rgb

    t_start = time.perf_counter()
    default_threads = torch.get_num_threads()
    print("bench_cpu_choices: CPU-speed choices of the extraction loop, one at a time")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} cpus "
          f"({affinity} usable), python {platform.python_version()}, torch {torch.__version__}, "
          f"threads {default_threads} intra-op / {torch.get_num_interop_threads()} inter-op, "
          f"MKL-DNN {torch.backends.mkldnn.is_available()}, niceness {os.nice(0)}")
    for var in MALLOC_VARS:
        print(f"  {var}={os.environ.get(var, '(unset)')}")
    malloc_set = all(os.environ.get(v) for v in MALLOC_VARS[:2])
    print(f"  allocator settings of docs/OFFLINE.md: {'SET' if malloc_set else 'NOT set'}")
    print(f"  load average at start: {loadavg()} (other processes on the machine distort the numbers)")
    print(f"config: model={args.model} num_images={args.num_images} batch_size={args.batch_size} "
          f"levels={DEFAULT_LEVELS} (product default) mode=pool grid={args.grid} (product default {DEFAULT_GRID}) "
          f"repeats={args.repeats} interleaved (best reported) choices={choices}")

    tmp = tempfile.mkdtemp(prefix="ood-bench-cpu-")
    rows = []  # dicts: choice, variant, product, reference, ips, user, system, runs
    bs = args.batch_size

    def compare(choice, variants, n):
        """variants: list of (name, run_fn, warm_fn, role[, images]) with role in {"product", "alt", "ref"};
        ``images`` (default n) is the number of images one run of that variant embeds."""
        variants = [v if len(v) == 5 else (*v, n) for v in variants]
        t0 = time.perf_counter()
        print(f"\n[{choice}] load average {loadavg()}", flush=True)
        for name, _, warm, _, _ in variants:
            warm()
        timers = {name: [] for name, *_ in variants}
        outputs = {}
        for _ in range(args.repeats):
            for name, run, _, _, _ in variants:
                with LoadTimer() as t:
                    outputs[name] = run()
                timers[name].append(t)
        for name, _, _, role, n in variants:
            ts = timers[name]
            best = min(ts, key=lambda t: t.seconds)
            rows.append({"choice": choice, "variant": name, "role": role, "n": n, "ips": n / best.seconds,
                         "user": best.user, "system": best.system, "others": best.others,
                         "runs": [round(n / t.seconds, 1) for t in ts]})
            others = " ".join("?" if t.others is None else f"{t.others:.1f}" for t in ts)
            print(f"  {name}: {n / best.seconds:.1f} images/s, user {best.user:.2f} s, sys {best.system:.2f} s "
                  f"(runs: {rows[-1]['runs']} images/s; other processes' CPU s during each run: {others})",
                  flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s for this choice)")
        return outputs

    try:
        paths = write_pngs(args.num_images, tmp)
        n = len(paths)
        print(f"wrote {n} Fashion-MNIST PNG files (28x28 grayscale) to {tmp}")

        ext = PyramidExtractor(args.model, levels=list(DEFAULT_LEVELS), mode="pool", grid=args.grid,
                               weights=args.weights)
        print(f"product extractor: levels {ext.level_names} channels {ext.channels} dim {ext.dim} input "
              f"{ext.data_config['input_size']} weights={ext.weights_source.get('kind')}")
        tensors = torch.stack([ext.transform(load_rgb(p)) for p in paths])
        print(f"pre-decoded tensors: {tuple(tensors.shape)} {tensors.dtype} "
              f"(contiguous={tensors.is_contiguous()})")
        warm_x = tensors[:bs]

        # 1. grad mode ------------------------------------------------------------------------------
        if 1 in choices:
            model = ext.model
            n_grad = sum(p.requires_grad for p in model.parameters())
            print(f"\n1. grad mode (pre-decoded, batch {bs}); model parameters with requires_grad: "
                  f"{n_grad}/{len(list(model.parameters()))}")

            def grad_run(ctx, x):
                out = []
                for b in batches(x, bs):
                    with ctx():
                        feats = model(b)
                        out.append(combine_levels(feats, "pool", args.grid).detach().float().numpy())
                return np.concatenate(out)

            def grad_variant(name, ctx, role):
                return (name, lambda: grad_run(ctx, tensors), lambda: grad_run(ctx, warm_x), role)

            outs = compare("1 grad mode", [
                grad_variant("torch.inference_mode()", torch.inference_mode, "product"),
                grad_variant("torch.no_grad()", torch.no_grad, "alt"),
                grad_variant("autograd on (plain forward)", torch.enable_grad, "alt"),
            ], n)
            ref = outs["torch.inference_mode()"]
            for k, v in outs.items():
                print(f"  check: {k} vs inference_mode max |diff| = {float(np.abs(v - ref).max()):.2e}")

        # 2. memory format --------------------------------------------------------------------------
        if 2 in choices:
            print(f"\n2. memory format (pre-decoded, batch {bs}, inference_mode)")
            model_cf = ext.model
            model_cl = copy.deepcopy(ext.model).to(memory_format=torch.channels_last).eval()

            def mf_run(model, x, cl):
                out = []
                with torch.inference_mode():
                    for b in batches(x, bs):
                        if cl:
                            b = b.contiguous(memory_format=torch.channels_last)
                        feats = model(b)
                        out.append(combine_levels(feats, "pool", args.grid).float().numpy())
                return np.concatenate(out)

            outs = compare("2 memory format", [
                ("contiguous (NCHW)", lambda: mf_run(model_cf, tensors, False),
                 lambda: mf_run(model_cf, warm_x, False), "product"),
                ("channels_last (NHWC)", lambda: mf_run(model_cl, tensors, True),
                 lambda: mf_run(model_cl, warm_x, True), "alt"),
            ], n)
            a, b = outs["contiguous (NCHW)"], outs["channels_last (NHWC)"]
            print(f"  check: channels_last vs contiguous embeddings max |diff| = {float(np.abs(a - b).max()):.2e} "
                  f"(max |value| {float(np.abs(a).max()):.2f})")
            del model_cl

        # 3. batch size -----------------------------------------------------------------------------
        if 3 in choices:
            n_small = min(n, args.small_batch_images)
            print("\n3. batch size (PyramidExtractor.extract, PNG decoding included, num_workers=1); "
                  f"batch sizes < 16 embed only the first {n_small} images per run (--small-batch-images), "
                  "they are slow")

            def bs_variant(b):
                items = paths if b >= 16 else paths[:n_small]
                return (f"batch_size={b}",
                        lambda: ext.extract(items, batch_size=b, num_workers=1, progress=False).embeddings,
                        lambda: ext.extract(paths[:max(b, 8)], batch_size=b, num_workers=1, progress=False),
                        "product" if b == 32 else "alt", len(items))

            compare("3 batch size", [bs_variant(b) for b in (1, 8, 16, 32, 64)], n)

        # 4. DataLoader workers ---------------------------------------------------------------------
        if 4 in choices:
            print(f"\n4. DataLoader workers (PyramidExtractor.extract, batch {bs})")

            def nw_variant(nw):
                return (f"num_workers={nw}",
                        lambda: ext.extract(paths, batch_size=bs, num_workers=nw, progress=False).embeddings,
                        lambda: ext.extract(paths[:bs], batch_size=bs, num_workers=nw, progress=False),
                        "product" if nw == 0 else "alt")

            compare("4 DataLoader workers", [nw_variant(nw) for nw in (0, 1, 2)], n)

        # 5. intra-op threads -----------------------------------------------------------------------
        if 5 in choices:
            print(f"\n5. torch intra-op threads (embed_tensor on pre-decoded tensors, batch {bs}); "
                  f"torch default here: {default_threads}")

            def th_run(k, x):
                torch.set_num_threads(k)
                try:
                    return np.concatenate([ext.embed_tensor(b) for b in batches(x, bs)])
                finally:
                    torch.set_num_threads(default_threads)

            def th_variant(k):
                label = f"set_num_threads({k})" + (" = torch default" if k == default_threads else "")
                return (label, lambda: th_run(k, tensors), lambda: th_run(k, warm_x),
                        "product" if k == default_threads else "alt")

            thread_counts = sorted({1, 2, default_threads})
            compare("5 intra-op threads", [th_variant(k) for k in thread_counts], n)
            print(f"  threads restored: {torch.get_num_threads()}")

        # 6. one forward for all levels vs one forward per level ------------------------------------
        if 6 in choices:
            ext_all = PyramidExtractor(args.model, levels=None, mode="pool", grid=args.grid, weights=args.weights)
            n_levels = len(ext_all.level_names)
            ext_each = [PyramidExtractor(args.model, levels=[i], mode="pool", grid=args.grid, weights=args.weights)
                        for i in range(n_levels)]
            print(f"\n6. all {n_levels} levels {ext_all.level_names} (dim {ext_all.dim}): one forward vs one "
                  f"forward per level (pre-decoded, batch {bs}); single-level extractors stop at their level "
                  f"(out_indices), dims {[e.dim for e in ext_each]}")

            def one_pass(x):
                return np.concatenate([ext_all.embed_tensor(b) for b in batches(x, bs)])

            def per_level(x):
                return np.concatenate([np.concatenate([e.embed_tensor(b) for e in ext_each], axis=1)
                                       for b in batches(x, bs)])

            def deepest(x):
                return np.concatenate([ext.embed_tensor(b) for b in batches(x, bs)])

            outs = compare("6 levels/forward", [
                (f"{n_levels} levels, one forward", lambda: one_pass(tensors), lambda: one_pass(warm_x), "product"),
                (f"{n_levels} levels, one forward per level", lambda: per_level(tensors),
                 lambda: per_level(warm_x), "alt"),
                ("deepest level only (product default levels)", lambda: deepest(tensors),
                 lambda: deepest(warm_x), "ref"),
            ], n)
            a, b = outs[f"{n_levels} levels, one forward"], outs[f"{n_levels} levels, one forward per level"]
            print(f"  check: per-level concatenation vs one-forward embeddings max |diff| = "
                  f"{float(np.abs(a - b).max()):.2e}")
            del ext_all, ext_each
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # Final table ---------------------------------------------------------------------------------------
    print(f"\nresults ({args.model}, {n} images, best of {args.repeats} interleaved runs; "
          f"malloc settings {'SET' if malloc_set else 'NOT set'}):")
    print("  rel. = images/s / images/s of the product's current variant of the same choice (marked *)")
    header = ("choice", "variant", "images", "images/s", "rel.", "user s", "sys s", "others s", "keep?")
    table = []
    for choice in dict.fromkeys(r["choice"] for r in rows):
        group = [r for r in rows if r["choice"] == choice]
        prod = next(r for r in group if r["role"] == "product")
        alts = [r for r in group if r["role"] == "alt"]
        best_alt = max(alts, key=lambda r: r["ips"]) if alts else None
        for r in group:
            rel = r["ips"] / prod["ips"]
            if r["role"] == "ref":
                hint = "reference"
            elif r["role"] == "product":
                if best_alt is None:
                    hint = "no alternative"
                else:
                    gain = prod["ips"] / best_alt["ips"] - 1
                    if gain > MARGIN:
                        hint = f"keep (measured +{gain:.0%} vs best alternative)"
                    elif gain < -MARGIN:
                        hint = f"reconsider: {best_alt['variant']} is {-gain / (1 + gain):.0%} faster"
                    else:
                        hint = f"no measured gain ({gain:+.0%} vs best alternative)"
            else:
                if rel > 1 + MARGIN:
                    hint = f"faster than product (+{rel - 1:.0%}): consider"
                elif rel < 1 - MARGIN:
                    hint = f"slower ({rel - 1:+.0%})"
                else:
                    hint = f"same within 5% ({rel - 1:+.0%})"
            mark = "*" if r["role"] == "product" else " "
            table.append((choice, f"{mark} {r['variant']}", str(r["n"]), f"{r['ips']:.1f}", f"{rel:.2f}",
                          f"{r['user']:.2f}", f"{r['system']:.2f}",
                          "?" if r["others"] is None else f"{r['others']:.1f}", hint))
    widths = [max(len(str(x[i])) for x in [header] + table) for i in range(len(header))]
    fmt = "  " + "  ".join(f"{{:{'<' if i in (0, 1, 8) else '>'}{w}}}" for i, w in enumerate(widths))
    print(fmt.format(*header))
    print("  " + "  ".join("-" * w for w in widths))
    last = None
    for row in table:
        print(fmt.format(*(row if row[0] != last else ("",) + row[1:])))
        last = row[0]
    print("  (user/sys = CPU seconds of this process and its finished DataLoader workers, best run; others = CPU "
          "seconds other processes of the machine used during that run, from /proc/stat: a large value means the "
          "run competed for the 2 cores)")
    print(f"  load average at end: {loadavg()}")
    print(f"  total runtime: {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
