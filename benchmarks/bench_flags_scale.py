#!/usr/bin/env python
"""How long ``ood.flag_samples`` (the review panel's *Save as flags*) takes on a large dataset, phase by phase.

Data: N samples with fake file paths (no images are read), 10% tagged ``trusted``, an ``ood_embeddings`` vector
field of ``--dim`` random float32 values (default 2048, as in ``bench_app_scale.py``: its size decides how long
each scan of the documents takes; 0 = none) and a score run ``ood_default`` (kind ``ood_scores``, reference
``trusted``) written through the product's write path (``runs.write_and_record``, as the tests do): the
detector's own speed is not measured here. 0.2% of the samples have no score (their flag is None).

Scenarios, in this order on the same dataset (each flags about 5% of the samples):

1. ``flag_samples(ds, "ood_default", rule="top_fraction", value=0.05, tag="ood")``: a new flag field and flags
   run (as the audit and the SDK make them);
2. the panel's first *Save as flags* (``operators.panel_state.save_review_flags``: threshold at the 95.5th
   percentile, its own flags run ``ood_default_review_flag``, tag ``ood``, ``overwrite=True``, the ids and
   scores read by the panel): a new field, whose tag ``ood`` is already claimed on most flagged samples by
   run 1;
3. the panel's second save at the 94.5th percentile: replaces its run and its field, tags 1% more samples;
4. the panel's third save, at the 95.5th percentile again: replaces them, removes the tags save 3 added;
   3 and 4 again, in turn (``--rounds``, default 2: the time of one pass over the documents varies by up to 2x
   from one call to the next; each call starts after an ``fsync``, with the earlier writes on disk).

Each call is timed as a whole and split into phases by timing wrappers around the package's functions and
FiftyOne's field renames and deletions (each one pass over every document; nested phases are indented; times
are inclusive, a phase called several times is summed). ``outcome`` is a digest of everything the call left
(flag values, every sample's tags, the run's record without its random field marks: rule, threshold, tagged
samples, counts, fields; the journal left over; how many documents hold the flag key, null, True, False), with
samples named by their file path: two runs of this script with the same arguments, before and after a change
(the code before: ``git archive <commit> | tar -x -C <folder>``, this script copied into it), left the same
results when their digests are equal. ``--profile`` also prints the top functions of cProfile per scenario.

Isolation: a private mongod (FiftyOne's bundled binary) in a temporary folder, stopped and deleted at the end
(``private_mongod`` of ``bench_app_scale.py``); the user's FiftyOne database is never touched.

Usage (results in benchmarks/results/bench_flags_scale.txt)::

    cd /work/main && .venv/bin/python benchmarks/bench_flags_scale.py --n 200000
"""

import argparse
import hashlib
import json
import os
import sys
import time
from collections import defaultdict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for path in (REPO, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from bench_app_scale import describe_commit, private_mongod  # noqa: E402

# (module, function) pairs timed as phases: the steps of flag_samples and of its commit
PHASES = [
    ("ood_core.fo.evaluation", ["_flag_target", "previous_flags", "read_scores", "given_scores", "compute_rule",
                                "_flags_kept_outside", "tag_plan", "flag_values", "_flag_counts"]),
    ("ood_core.fo.flags", ["claimed_by_other_runs", "_tagged_item_ids", "set_tags"]),
    ("ood_core.fo.runs", ["write_and_record", "check_new_run", "register_run"]),
    ("ood_core.fo.commit", ["repair", "stage_values", "commit", "discard", "_open_journal", "_move_aside",
                            "_roll_forward", "_drop"]),
    ("ood_core.fo.followups", ["apply", "untag", "tag"]),
    ("ood_core.fo.ownership", ["refuse_stale_records"]),
]


class PhaseTimer:
    """Wraps module functions so that each call's time is added to its path of nested phases."""

    def __init__(self):
        self.stack, self.total, self.calls, self.order = [], defaultdict(float), defaultdict(int), []

    def wrap(self, module, name):
        """Time ``module.name`` (``module``: a module name, or a class whose method is timed)."""
        import functools
        import importlib

        mod = importlib.import_module(module) if isinstance(module, str) else module
        func = getattr(mod, name)

        @functools.wraps(func)
        def timed(*args, **kwargs):
            self.stack.append(name)
            path = tuple(self.stack)
            if path not in self.total:
                self.order.append(path)
            t = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.total[path] += time.perf_counter() - t
                self.calls[path] += 1
                self.stack.pop()

        setattr(mod, name, timed)

    def install(self):
        for module, names in PHASES:
            for name in names:
                self.wrap(module, name)
        import fiftyone.core.dataset as fod

        for name in ("rename_sample_field", "delete_sample_field"):  # FiftyOne's: one pass over every document
            self.wrap(fod.Dataset, name)

    def reset(self):
        self.total.clear()
        self.calls.clear()
        self.order.clear()

    def report(self, min_s=0.005):
        for path in self.order:
            if self.total[path] >= min_s:
                calls = f" ({self.calls[path]} calls)" if self.calls[path] > 1 else ""
                print(f"    {'  ' * (len(path) - 1)}{path[-1]:<{34 - 2 * len(path)}s} {self.total[path]:8.2f} s{calls}")


def build_dataset(n, dim):
    """The dataset (see the module docstring); prints the time of each step."""
    import fiftyone as fo

    import ood_core as ood
    from ood_core.fo import runs as fo_runs

    rng = np.random.default_rng(0)
    is_ood = rng.random(n) < 0.05
    trusted = (~is_ood) & (rng.random(n) < 0.10)
    t = time.perf_counter()
    ds = fo.Dataset(f"bench-flags-scale-{n}")
    ds.add_samples([fo.Sample(filepath=f"/nonexistent/bench/img_{i:07d}.png", tags=["trusted"] if trusted[i] else [],
                              is_ood=bool(is_ood[i])) for i in range(n)], progress=False)
    print(f"  add {n} samples: {time.perf_counter() - t:.1f} s", flush=True)
    if dim:
        t = time.perf_counter()
        ids = ds.values("id")
        for start in range(0, n, 20_000):  # in chunks: the vectors of every sample at once need a lot of memory
            x = rng.random((min(20_000, n - start), dim), dtype=np.float32)
            ds.set_values("ood_embeddings", dict(zip(ids[start:start + len(x)], list(x))), key_field="id",
                          progress=False)
        print(f"  {dim}-d embeddings: {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    scores = rng.normal(size=n) + 3 * is_ood
    unscored = rng.random(n) < 0.002  # a few samples without a score: their flag is None
    values = [None if u else float(x) for u, x in zip(unscored, scores)]
    fo_runs.write_and_record(ds, [("ood_default", values)], "ood_default", kind="ood_scores",
                             score_field="ood_default", reference={"tag": "trusted"},
                             detector={"method": "pyramid_knn"})
    print(f"  score run (write_and_record): {time.perf_counter() - t:.1f} s; runs {ood.list_ood_runs(ds)}",
          flush=True)
    return ds, scores[~unscored]


def outcome(ds, flag_key, dump=None):
    """Digest of what a flags run left: flag values and tags of every sample, its record, leftover journals."""
    from ood_core.fo import commit
    from ood_core.fo.evaluation import get_flag_info

    info = get_flag_info(ds, flag_key)
    paths, flags, tags = ds.values(["filepath", info["flag_field"], "tags"])
    by_id = dict(zip(ds.values("id"), paths))
    record = {k: v for k, v in info.items() if k not in ("timestamp", "version", "tagged_ids", "field_marks")}
    record["tagged"] = sorted(by_id[i] for i in info["tagged_ids"])
    state = {
        "flags": sorted(zip(paths, [repr(f) for f in flags])),
        "tags": sorted((p, sorted(t)) for p, t in zip(paths, tags)),
        "record": record,
        "field_type": type(ds.get_field(info["flag_field"])).__name__,
        "fields": sorted(ds.get_field_schema()),
        "runs": sorted(ds.list_runs()),
        "journal": commit.journal().count_documents({}),
        "stored": {name: ds._sample_collection.count_documents({info["flag_field"]: query}) for name, query in
                   (("key", {"$exists": True}), ("null", {"$type": "null"}), ("true", True), ("false", False))},
    }
    text = json.dumps(state, sort_keys=True, default=str)
    if dump:
        with open(dump, "w") as f:
            f.write(text)
    counts = {k: info.get(k) for k in ("num_flagged", "num_scored", "num_flagged_in_view", "num_scored_in_view")}
    return hashlib.sha256(text.encode()).hexdigest()[:16], counts, len(info["tagged_ids"])


def scenarios(ds, scores, rounds):
    import ood_core as ood
    from operators.panel_state import save_review_flags

    summary = {"run_key": "ood_default", "patches_field": None, "score_field": "ood_default"}
    calls = [
        ("1 flag_samples top_fraction=0.05, tag 'ood' (new field)", "ood_default_flag",
         lambda: ood.flag_samples(ds, "ood_default", rule="top_fraction", value=0.05, tag="ood")),
        ("2 panel Save as flags, threshold at p95.5 (new field)", "ood_default_review_flag",
         lambda: save_review_flags(ds, summary, float(np.quantile(scores, 0.955)), "ood")),
        ("3 panel Save as flags again, threshold at p94.5 (replaces; tags more)", "ood_default_review_flag",
         lambda: save_review_flags(ds, summary, float(np.quantile(scores, 0.945)), "ood")),
        ("4 panel Save as flags again, threshold at p95.5 (replaces; untags)", "ood_default_review_flag",
         lambda: save_review_flags(ds, summary, float(np.quantile(scores, 0.955)), "ood")),
    ]
    return calls[:2] + calls[2:] * rounds


def run_scenarios(ds, scores, args):
    import cProfile
    import pstats

    import fiftyone.core.odm as foo

    timer, profile, dump = PhaseTimer(), args.profile, args.dump
    timer.install()
    for label, flag_key, call in scenarios(ds, scores, args.rounds):
        foo.get_db_conn().client.admin.command("fsync")  # the earlier writes on disk: each call starts alike
        timer.reset()
        prof = cProfile.Profile() if profile else None
        t = time.perf_counter()
        if prof:
            prof.enable()
        out = call()
        if prof:
            prof.disable()
        elapsed = time.perf_counter() - t
        digest, counts, claimed = outcome(ds, flag_key, dump and os.path.join(dump, f"{label[0]}.json"))
        print(f"\n{label}: {elapsed:.2f} s")
        print(f"  tags added {out['tags_added']}, removed {out['tags_removed']}, claimed {claimed}; {counts}")
        print(f"  outcome {digest}")
        timer.report()
        if prof:
            pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="number of samples (default 200000)")
    parser.add_argument("--dim", type=int, default=2048, help="embedding size stored per sample (0 = none)")
    parser.add_argument("--profile", action="store_true", help="also print cProfile's top functions")
    parser.add_argument("--rounds", type=int, default=2, help="times scenarios 3 and 4 run, in turn (default 2)")
    parser.add_argument("--dump", help="also write each scenario's outcome (JSON) into this folder")
    args = parser.parse_args()
    t_start = time.perf_counter()
    with private_mongod("ood-bench-flags-scale-") as (uri, tmp):
        os.environ.update(FIFTYONE_DATABASE_URI=uri, FIFTYONE_DO_NOT_TRACK="true",
                          FIFTYONE_DATABASE_VALIDATION="false")
        import fiftyone as fo

        print("bench_flags_scale: ood.flag_samples / the panel's Save as flags on a large dataset")
        print(f"machine: {os.cpu_count()} cores, load average at start "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine)")
        print(f"N={args.n}, dim={args.dim}, fiftyone {fo.__version__}, commit {describe_commit()}")
        print(f"database: private mongod {uri} in {tmp} (deleted at the end)")
        print("building the dataset:", flush=True)
        ds, scores = build_dataset(args.n, args.dim)
        run_scenarios(ds, scores, args)
        print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"total time: {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
