"""Test environment: a private FiftyOne database and this repo as a plugin.

The environment variables must be set before fiftyone is imported anywhere,
so they are set at import time of this conftest (pytest imports it first).
"""

import atexit
import os
import shutil
import sys
import tempfile
import uuid

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TMP = tempfile.mkdtemp(prefix="ood-tests-")
_PLUGINS = os.path.join(_TMP, "plugins")
os.makedirs(_PLUGINS)
os.symlink(REPO, os.path.join(_PLUGINS, "fiftyone-ood"))

os.environ["FIFTYONE_DATABASE_DIR"] = os.path.join(_TMP, "db")
os.environ["FIFTYONE_PLUGINS_DIR"] = _PLUGINS
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
os.environ.setdefault("FIFTYONE_OOD_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "fiftyone-ood"))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


# Registered before fiftyone is imported, so it runs after FiftyOne's own exit
# handlers have stopped mongod (deleting its files earlier makes mongod abort).
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


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
def dataset_factory():
    """Create uniquely named FiftyOne datasets; deleted after the test."""
    import fiftyone as fo

    created = []

    def make(paths, labels=None, tags=None):
        ds = fo.Dataset(f"test-{uuid.uuid4().hex[:8]}")
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
