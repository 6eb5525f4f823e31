#!/usr/bin/env python
"""How fast the App's OOD operator forms and the "OOD review" panel answer on a large dataset.

Scenarios: forms (``resolve_input``, called by the App on opening a form and on every keystroke or choice) of
``score_ood`` (open; typing a new score field; method=knn; method=weighted_label_vote), ``audit_dataset``
(open; typing a new audit key), ``compute_ood_visualization`` (open); handlers of the ``ood_review`` panel
(through FiftyOne's panel machinery, as ``tests/test_panel.py`` does): open, slider move, preset top
fraction, show flagged. Each scenario is called 6 times (the first call, then 5 following: same parameters,
the next keystroke or the next slider/preset value); a call is timed from building its ``ExecutionContext``
to its return (the App server's work, without HTTP); MongoDB commands are counted by pymongo command
monitoring. The forms' kept answers (``ood_core.fo.form_cache``) are cleared before each form scenario (its
first call is cold; the plugin code is loaded by a warm-up resolve before); the panel scenarios follow one
another as in one App session, the cache cleared only before the first open.

Data: 300 real Fashion-MNIST test images (30 per class, ``ood_core.demo.load_fashion_mnist``, the source of
the tests' ``fashion_files``) written as PNGs and embedded by ``ood.compute_pyramid_embeddings`` (default
backbone, offline). Each of the N samples uses a random one of them: ``ground_truth`` = its class, embedding
= its embedding + noise (0.3 x mean std); 5% shifted as OOD (+ noise 2 x std, ``is_ood``), 10% of the rest
tagged ``trusted``; registered as an ``embeddings`` run with the real run's backbone record. Two score runs
(``ood_default`` = is_ood + noise, ``label_issue`` = noise) go through the product's write path
(``runs.write_and_record``): the detectors' own speed is not measured here.

Isolation: a private mongod (FiftyOne's bundled binary) on a free port in a temporary folder
(``FIFTYONE_DATABASE_URI``) and a plugins folder linking this repository (``FIFTYONE_PLUGINS_DIR``), stopped
and deleted at the end, also on failure; the user's FiftyOne database is never touched. Runs offline.

Usage (N defaults to 50000; results in benchmarks/results/bench_app_scale.txt)::

    cd /work/main && OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_app_scale.py 50000
"""

import importlib.util
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pymongo.monitoring

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
PLUGIN = "@fiftyone-ood/ood"
CALLS = 6  # the first call + 5 following


def start_mongod(tmp):
    """A private mongod in ``tmp``; returns (process, URI)."""
    spec = importlib.util.find_spec("fiftyone")
    mongod = os.path.join(list(spec.submodule_search_locations)[0], "db", "bin", "mongod")
    if not os.access(mongod, os.X_OK):
        raise RuntimeError(f"no mongod at {mongod}: run ./setup.sh")
    os.makedirs(os.path.join(tmp, "db"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([mongod, "--dbpath", os.path.join(tmp, "db"), "--port", str(port), "--bind_ip", "127.0.0.1",
                             "--nounixsocket", "--logpath", os.path.join(tmp, "mongod.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"mongodb://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("private mongod did not start")
            time.sleep(0.2)


class CommandCounter(pymongo.monitoring.CommandListener):
    """pymongo command listener: counts the commands started since ``reset()``."""
    count = 0

    def started(self, event):
        self.count += 1

    def succeeded(self, event):
        pass

    failed = succeeded



@contextlib.contextmanager
def private_mongod(prefix):
    """``(URI, folder)`` of a private mongod in a new temporary folder; afterwards FiftyOne's client is closed,
    the server stopped and the folder deleted."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    proc = None
    try:
        proc, uri = start_mongod(tmp)
        yield uri, tmp
    finally:
        if "fiftyone" in sys.modules:
            sys.modules["fiftyone"].core.odm.database._disconnect()  # close the client before its server goes
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def write_images(root, per_class=30):
    """``per_class`` real Fashion-MNIST test images of each class as PNG files; returns (paths, class names)."""
    from PIL import Image

    from ood_core.demo import FASHION_MNIST_CLASSES, load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    idx = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    os.makedirs(root)
    paths = []
    for i, j in enumerate(idx):
        paths.append(os.path.join(root, f"img_{i:04d}.png"))
        Image.fromarray(images[j], mode="L").save(paths[-1])
    return paths, [FASHION_MNIST_CLASSES[labels[j]] for j in idx]


def build_dataset(n, paths, names):
    """The big dataset (see the module docstring); prints the time of each step."""
    import fiftyone as fo

    import ood_core as ood
    from ood_core.fo import runs as fo_runs

    t = time.perf_counter()
    base = fo.Dataset("bench-app-scale-images")
    base.add_samples([fo.Sample(filepath=p) for p in paths], progress=False)
    ood.compute_pyramid_embeddings(base, "ood_embeddings", num_workers=0, progress=False)
    by_path = dict(zip(base.values("filepath"), base.values("ood_embeddings")))
    emb = np.stack([by_path[p] for p in paths]).astype(np.float32)
    info = ood.get_ood_run_info(base, "ood_embeddings")
    print(f"  real embeddings of {len(paths)} images {emb.shape}: {time.perf_counter() - t:.1f} s", flush=True)

    rng = np.random.default_rng(0)
    img = rng.integers(0, len(paths), n)
    is_ood = rng.random(n) < 0.05
    trusted = (~is_ood) & (rng.random(n) < 0.10)
    t = time.perf_counter()
    ds = fo.Dataset(f"bench-app-scale-{n}")
    ds.add_samples([fo.Sample(filepath=paths[img[i]], tags=["trusted"] if trusted[i] else [],
                              ground_truth=fo.Classification(label=names[img[i]]), is_ood=bool(is_ood[i]))
                    for i in range(n)], progress=False)
    print(f"  add {n} samples: {time.perf_counter() - t:.1f} s", flush=True)

    t = time.perf_counter()
    sd = emb.std(0).mean()
    x = emb[img] + rng.normal(scale=0.3 * sd, size=(n, emb.shape[1])).astype(np.float32)
    x[is_ood] += rng.normal(scale=2.0 * sd, size=(int(is_ood.sum()), emb.shape[1])).astype(np.float32)
    x = np.maximum(x, 0).astype(np.float32)
    ds.set_values("ood_embeddings", dict(zip(ds.values("id"), list(x))), key_field="id", progress=False)
    del x
    keep = {k: info[k] for k in ("status", "embeddings_field", "batch_size", "backbone", "projection", "dtype",
                                 "patches_field") if k in info}
    fo_runs.register_run(ds, "ood_embeddings", kind="embeddings", fields=["ood_embeddings"], **keep)
    print(f"  write + register embeddings: {time.perf_counter() - t:.1f} s", flush=True)

    t = time.perf_counter()
    y = np.array(ds.values("is_ood"), bool)
    rng = np.random.default_rng(1)
    for key, kind, extra in (("ood_default", "ood_scores",
                              dict(reference={"tag": "trusted"}, detector={"method": "pyramid_knn"})),
                             ("label_issue", "label_issues", dict(detector={"method": "weighted_label_vote"}))):
        s = rng.normal(size=n) + (3 * y if kind == "ood_scores" else 0)
        fo_runs.write_and_record(ds, [(key, s.tolist())], key, kind=kind, **extra)
    print(f"  two score runs (write_and_record): {time.perf_counter() - t:.1f} s; runs {ood.list_ood_runs(ds)}",
          flush=True)
    return ds


def time_calls(counter, calls):
    """Run the zero-argument ``calls`` in order; returns (first ms, median ms of the rest, commands of the rest
    as text, first error or None)."""
    times, cmds, error = [], [], None
    for call in calls:
        counter.count = 0
        t = time.perf_counter()
        try:
            call()
        except Exception as e:  # noqa: BLE001 - reported in the table, the other scenarios still run
            error = error or f"{type(e).__name__}: {e}"[:300]
        times.append((time.perf_counter() - t) * 1000)
        cmds.append(counter.count)
    rest = cmds[1:]
    cmd_text = str(rest[0]) if min(rest) == max(rest) else f"{min(rest)}-{max(rest)}"
    return times[0], statistics.median(times[1:]), cmd_text, error


def measure_forms(ds, counter):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext

    from ood_core.fo import form_cache

    def resolve(op, params):
        ctx = ExecutionContext(request_params=dict(dataset_name=ds.name, params=dict(params), selected=[]))
        prop = op.resolve_input(ctx)
        if prop is not None:
            prop.to_json()

    def typed(base, key, text):
        return [dict(base, **{key: text[:i]}) for i in range(len(text) - CALLS + 1, len(text) + 1)]

    scenarios = [
        ("score_ood", "open", [{}] * CALLS),
        ("score_ood", "typing a new score field", typed({"embeddings_field": "ood_embeddings"}, "score_field",
                                                       "my_ood_score")),
        ("score_ood", "method=knn", [{"method": "knn"}] * CALLS),
        ("score_ood", "method=weighted_label_vote",
         [{"method": "weighted_label_vote", "label_field": "ground_truth"}] * CALLS),
        ("audit_dataset", "open", [{}] * CALLS),
        ("audit_dataset", "typing a new audit key", typed({}, "audit_key", "my_audit_key")),
        ("compute_ood_visualization", "open", [{}] * CALLS),
    ]
    resolve(foo.get_operator(f"{PLUGIN}/score_ood"), {})  # warm-up: plugin modules and lazy imports loaded
    rows = []
    for name, label, plist in scenarios:
        op = foo.get_operator(f"{PLUGIN}/{name}")
        form_cache.clear()
        rows.append((f"{name} form: {label}",
                     *time_calls(counter, [lambda p=p: resolve(op, p) for p in plist])))
    return rows


def measure_panel(ds, counter):
    import fiftyone.operators as foo
    from fiftyone.operators.executor import ExecutionContext, Executor

    from ood_core.fo import form_cache
    from operators.panel_state import threshold_state_key

    op = foo.get_operator(f"{PLUGIN}/ood_review")

    notes = {}

    def handler(method, state):
        request = dict(dataset_name=ds.name, selected=[],
                       params=dict(__method__=method, panel_id="bench-panel", panel_state=dict(state)))
        executor = Executor()
        op.execute(ExecutionContext(request_params=request, executor=executor))
        notes[method] = [r.params.get("message") for r in executor._requests if r.operator_uri.endswith("notify")]

    base = {"run_key": "ood_default"}
    slider = threshold_state_key("ood_default", 0, "")
    scenarios = [
        ("open", "on_load", [{}] * CALLS),
        ("slider move", "on_change_input", [dict(base, **{slider: 2.0 + 0.2 * i}) for i in range(CALLS)]),
        ("preset top fraction", "apply_preset",
         [dict(base, presets={"preset": "top_fraction", "preset_value_top_fraction": 0.01 * (i + 1)})
          for i in range(CALLS)]),
        ("show flagged", "show_flagged", [dict(base, **{slider: 3.0})] * CALLS),
    ]
    form_cache.clear()
    rows = []
    for label, method, states in scenarios:
        rows.append((f"ood_review panel: {label}",
                     *time_calls(counter, [lambda s=s: handler(method, s) for s in states])))
    for method, messages in notes.items():
        if messages:
            print(f"  panel {method}, last call notified: {'; '.join(map(str, messages))}")
    return rows


def describe_commit():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO).returncode != 0
        return head + (" (+ uncommitted changes to tracked files)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def print_table(rows):
    print(f"\n{'scenario':58s} {'first ms':>9s} {'median of next 5 ms':>20s} {'MongoDB cmds/next call':>23s}")
    for label, first, median, cmds, _ in rows:
        print(f"{label:58s} {first:9.0f} {median:20.0f} {cmds:>23s}")
    print("".join(f"ERROR in {label}: {error}\n" for label, *_, error in rows if error), end="")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    t_start = time.perf_counter()
    with private_mongod("ood-bench-app-scale-") as (uri, tmp):
        os.makedirs(os.path.join(tmp, "plugins"))
        os.symlink(REPO, os.path.join(tmp, "plugins", "fiftyone-ood"))
        os.environ.update(FIFTYONE_DATABASE_URI=uri, FIFTYONE_PLUGINS_DIR=os.path.join(tmp, "plugins"),
                          FIFTYONE_DO_NOT_TRACK="true", FIFTYONE_DATABASE_VALIDATION="false")
        os.environ.setdefault("FIFTYONE_OOD_ALLOWED_DIRS", os.pathsep.join([tempfile.gettempdir(), REPO]))

        counter = CommandCounter()
        pymongo.monitoring.register(counter)  # before fiftyone creates its client
        import fiftyone as fo

        print("bench_app_scale: response times of the App's OOD forms and review panel on a large dataset")
        print(f"machine: {os.cpu_count()} cores, load average at start "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine)")
        print(f"N={n}, fiftyone {fo.__version__}, commit {describe_commit()}, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}")
        print(f"database: private mongod {uri} in {tmp} (deleted at the end)")
        print("building the dataset:", flush=True)
        paths, names = write_images(os.path.join(tmp, "images"))
        ds = build_dataset(n, paths, names)
        print("measuring forms and panel...", flush=True)
        rows = measure_forms(ds, counter) + measure_panel(ds, counter)
        print_table(rows)
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"total time: {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
