"""Test environment: a private FiftyOne database and this repo as a plugin.

The environment variables must be set before fiftyone is imported anywhere,
so they are set at import time of this conftest (pytest imports it first).
"""

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TMP = tempfile.mkdtemp(prefix="ood-tests-")
_PLUGINS = os.path.join(_TMP, "plugins")
os.makedirs(_PLUGINS)
os.symlink(REPO, os.path.join(_PLUGINS, "fiftyone-ood"))



def _start_private_mongod():
    """Start a mongod of our own and point FiftyOne at it with FIFTYONE_DATABASE_URI.

    FiftyOne's embedded service attaches to any FiftyOne mongod of the same
    user that is already running (e.g. the demo's), whatever
    FIFTYONE_DATABASE_DIR says; a URI makes the tests' database truly private.
    """
    spec = importlib.util.find_spec("fiftyone")
    mongod = os.path.join(list(spec.submodule_search_locations)[0], "db", "bin", "mongod")
    if not os.access(mongod, os.X_OK):
        raise RuntimeError(f"no mongod at {mongod}: run ./setup.sh (it installs one offline)")
    dbpath = os.path.join(_TMP, "db")
    os.makedirs(dbpath)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [mongod, "--dbpath", dbpath, "--port", str(port), "--bind_ip", "127.0.0.1", "--nounixsocket",
         "--logpath", os.path.join(_TMP, "mongod.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"private mongod did not start; see {_TMP}/mongod.log")
            time.sleep(0.2)

    def stop_and_clean():
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(_TMP, ignore_errors=True)

    atexit.register(stop_and_clean)
    return f"mongodb://127.0.0.1:{port}"


os.environ["FIFTYONE_DATABASE_URI"] = _start_private_mongod()
os.environ["FIFTYONE_PLUGINS_DIR"] = _PLUGINS
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
# App file parameters (weights, word lists) are read only from allowed folders; the tests' files live in /tmp
os.environ.setdefault("FIFTYONE_OOD_ALLOWED_DIRS", os.pathsep.join([tempfile.gettempdir(), REPO]))
os.environ.setdefault("FIFTYONE_OOD_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "fiftyone-ood"))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

#: the test files that take 60 s or more (pytest --durations=0 in a CI run), slowest first. run_tests.sh hands
#: whole files to parallel workers in collection order, so these start first and the workers finish at about the
#: same time; the order changes nothing else (each file's tests keep their order).
SLOW_FILES_FIRST = (
    "test_audit_rerun.py",
    "test_safety_gaps.py",
    "test_browser.py",
    "test_audit.py",
    "test_readme.py",
    "test_operators.py",
    "test_run_ownership.py",
    "test_report_leftovers.py",
    "test_fault_injection.py",
    "test_data_safety.py",
    "test_audit_leftovers.py",
    "test_install.py",
    "test_sharding.py",
    "test_clone_midcommit.py",
)


def pytest_collection_modifyitems(config, items):
    missing = [n for n in SLOW_FILES_FIRST if not os.path.isfile(os.path.join(REPO, "tests", n))]
    if missing:  # a renamed or removed file: the list would silently stop ordering it
        raise pytest.UsageError(f"tests/conftest.py's SLOW_FILES_FIRST names no test file {missing}; update the list")
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: other files keep their order


@pytest.fixture(scope="session")
def fashion_arrays():
    """Real Fashion-MNIST images (Debian dataset-fashion-mnist): 20 per class from the test split."""
    from ood_core.demo import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    idx = np.concatenate([np.flatnonzero(labels == c)[:20] for c in range(10)])
    return images[idx], labels[idx]


@pytest.fixture(scope="session")
def fashion_files(fashion_arrays, tmp_path_factory):
    """The same images written as PNG files; returns (paths, class names)."""
    from PIL import Image

    from ood_core.demo import FASHION_MNIST_CLASSES

    root = tmp_path_factory.mktemp("fmnist")
    images, labels = fashion_arrays
    paths = []
    for i, img in enumerate(images):
        p = str(root / f"img_{i:04d}.png")
        Image.fromarray(img, mode="L").save(p)
        paths.append(p)
    return paths, [FASHION_MNIST_CLASSES[c] for c in labels]


@pytest.fixture(scope="session")
def extractor():
    """The real offline backbone with its bundled ImageNet weights, small pooled pyramid."""
    from ood_core.features import PyramidExtractor

    return PyramidExtractor("tf_efficientnet_lite0", levels=[1, 2, 3], mode="pool", grid=1)


@pytest.fixture
def session_extractor(monkeypatch, extractor):
    """Make compute_pyramid_embeddings reuse the session's loaded backbone (speed only)."""
    import ood_core.features as features

    monkeypatch.setattr(features, "PyramidExtractor", lambda *a, **k: extractor)
    return extractor


@pytest.fixture
def dataset_factory():
    """Create uniquely named FiftyOne datasets; deleted after the test."""
    import fiftyone as fo

    created = []

    def make(paths, labels=None, tags=None):
        ds = fo.Dataset(f"test-{uuid.uuid4().hex[:8]}")
        ds.persistent = True  # as a curator's dataset in the App is (deleted after the test all the same)
        samples = []
        for i, p in enumerate(paths):
            s = fo.Sample(filepath=p, tags=list(tags[i]) if tags else [])
            if labels is not None:
                s["ground_truth"] = fo.Classification(label=labels[i])
            samples.append(s)
        ds.add_samples(samples, progress=False)
        created.append(ds)
        return ds

    yield make
    for ds in created:
        if not ds.deleted:
            ds.delete()


@pytest.fixture(scope="session")
def tiny_clip_factory(tmp_path_factory):
    """Tiny randomly initialised open_clip models saved to local weight files.

    ``make(name="ood-test-tiny-clip", seed=0, embed_dim=32)`` registers a tiny config with
    open_clip (``add_model_config``), builds it with ``torch.manual_seed(seed)`` and saves
    its state dict as ``.safetensors`` and ``.pt``. The product's real loading and encoding
    code then runs on these files in milliseconds. Returns a namespace with ``name``,
    ``cfg``, ``model`` (the in-memory original), ``safetensors`` and ``pt`` (paths);
    memoised per (name, seed, embed_dim). One name must always have one embed_dim.
    """
    import json
    from types import SimpleNamespace

    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny_clip")
    made = {}

    def make(name="ood-test-tiny-clip", seed=0, embed_dim=32):
        key = (name, seed, embed_dim)
        if key in made:
            return made[key]
        cfg = {
            "embed_dim": embed_dim,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
            # 49408 = the size of CLIP's BPE vocabulary, which the tokenizer emits.
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
        }
        cfg_path = folder / f"{name}.json"
        cfg_path.write_text(json.dumps(cfg))
        open_clip.add_model_config(cfg_path)
        torch.manual_seed(seed)
        model = open_clip.create_model(name).eval()
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        sf_path = folder / f"{name}-{seed}.safetensors"
        pt_path = folder / f"{name}-{seed}.pt"
        save_file(state, str(sf_path))
        torch.save(state, str(pt_path))
        made[key] = SimpleNamespace(name=name, cfg=cfg, model=model, safetensors=sf_path, pt=pt_path)
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_factory):
    """The default tiny CLIP model (embed_dim 32, seed 0); see ``tiny_clip_factory``."""
    return tiny_clip_factory()


@pytest.fixture
def one_torch_thread():
    """Run torch single-threaded during a test (speed only, for the tiny CLIP models).

    For a tiny model, torch's thread hand-offs cost more than the work itself: 10-20x
    slower on a busy 2-core machine.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def form_images(dataset_factory, fashion_files):
    """40 Fashion-MNIST images, 4 per class (20 tagged ``trusted``, the others ``test``) with ``ground_truth``
    labels: the dataset the operator and form tests open in the App."""
    paths, names = fashion_files
    idx = list(range(0, 200, 5))
    tags = [["trusted"] if i % 10 < 2 else ["test"] for i in idx]
    return dataset_factory([paths[i] for i in idx], [names[i] for i in idx], tags)


@pytest.fixture
def form_dataset(form_images):
    """``form_images`` with 8-d random vectors in ``vec`` and 40-d ones in ``vec40`` (fields to score)."""
    import numpy as np

    rng = np.random.default_rng(0)
    form_images.set_values("vec", list(rng.normal(size=(len(form_images), 8)).astype(np.float32)))
    form_images.set_values("vec40", list(rng.normal(size=(len(form_images), 40)).astype(np.float32)))
    return form_images


@pytest.fixture
def tiny_clip_params(tiny_clip, tmp_path, monkeypatch):
    """Form params for the tiny CLIP model file and a 22-word list for form_images (18 nouns, 3 adjectives,
    'bag'); a private text cache."""
    monkeypatch.setenv("FIFTYONE_OOD_CACHE_DIR", str(tmp_path / "cache"))
    words = tmp_path / "words.txt"
    nouns = "dog cat horse bird fish car truck boat train house tree river cloud pizza apple guitar clock lamp"
    words.write_text("\n".join(nouns.split() + ["red\tadj", "furry\tadj", "wooden\tadj", "bag"]) + "\n")
    return dict(model_name=tiny_clip.name, weights=str(tiny_clip.safetensors), word_list=str(words))


@pytest.fixture
def audit_images(dataset_factory, fashion_files):
    """``build(n=30, label=None, paths=None, labels=True)``: a new dataset of ``n`` real Fashion-MNIST images with
    their labels (every third one ``label`` when given; none with ``labels=False``), random 8-d vectors in ``vec``
    and the first third tagged ``trusted`` (the audit tests' dataset)."""
    import numpy as np

    files, names = fashion_files

    def build(n=30, label=None, paths=None, labels=True):
        idx = [(7 * i) % len(files) for i in range(n)]
        given = [label if label is not None and i % 3 == 0 else names[j] for i, j in enumerate(idx)]
        ds = dataset_factory(paths or [files[j] for j in idx], given if labels else None,
                             [["trusted"] if i < n // 3 else [] for i in range(n)])
        ds.set_values("vec", list(np.random.default_rng(n).normal(size=(n, 8)).astype(np.float32)))
        return ds

    return build
