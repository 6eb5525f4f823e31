"""Real labelled image sources and their cached pyramid embeddings, for benchmarks/robustness.py.

Sources (all offline):

- ``fmnist``: Debian ``dataset-fashion-mnist`` (28x28 grey, 10 classes); a seeded,
  class-balanced subset of the train split (``FMNIST_PER_CLASS`` per class).
- ``fmnist_test``: the whole Fashion-MNIST test split (t10k, 10,000 images, in file
  order); no benchmark that chose a default embeds it (``benchmarks/unseen_images.py``).
- ``digits``: scikit-learn's bundled ``load_digits`` (1,797 real 8x8 handwritten
  digits, 10 classes, 0..16 grey levels rescaled to 0..255).
- ``patches``: 40 random crops of each of 37 real photos (foolbox's 20
  ImageNet-val images and 17 scikit-image photos); class = the photo (object
  patches of natural imagery, see :func:`load_patches`).
- ``stamps``: Tux Paint's stamp images (Debian ``tuxpaint-stamps-default``) of 7
  natural-object categories (birds, insects, mammals, fruit, vegetables,
  flowers, vehicles), mostly photographs; class = the category (see
  :func:`load_stamps`).
- ``foolbox``: the 100 real images bundled with foolbox 3.3.4 (``foolbox/data``:
  20 each of ImageNet-val, CIFAR-10, CIFAR-100, MNIST, Fashion-MNIST; label in
  the file name). Used as far-OOD only (20 per class is too few for a reference).

Embeddings: the product's ``PyramidExtractor("tf_efficientnet_lite0", levels=None,
mode="pool", grid=2)``: 5 levels, channels (16, 24, 40, 112, 320), so the
embedding is 5 contiguous blocks of (64, 96, 160, 448, 1280) columns.
Cached as npz under ``~/.cache/fiftyone-ood/bench/`` keyed by source, backbone,
levels and grid.
"""

import glob
import hashlib
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

BACKBONE = os.environ.get("OOD_BENCH_BACKBONE", "tf_efficientnet_lite0")
GRID = 2
FMNIST_PER_CLASS = 800
SEED = 0
CACHE_DIR = os.path.join(
    os.environ.get("FIFTYONE_OOD_CACHE_DIR", os.path.expanduser("~/.cache/fiftyone-ood")), "bench"
)


def load_fmnist():
    from ood_core.demo import FASHION_MNIST_CLASSES, load_fashion_mnist

    images, labels = load_fashion_mnist("train")
    rng = np.random.default_rng(SEED)
    rows = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:FMNIST_PER_CLASS] for c in range(10)]
    )
    rows = np.sort(rows)
    names = [FASHION_MNIST_CLASSES[c] for c in range(10)]
    return images[rows], labels[rows].astype(np.int64), names


def load_fmnist_test():
    from ood_core.demo import FASHION_MNIST_CLASSES, load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    return images, labels.astype(np.int64), [FASHION_MNIST_CLASSES[c] for c in range(10)]


def load_digits_images():
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, d.target.astype(np.int64), [str(i) for i in range(10)]


def load_foolbox():
    """foolbox's bundled images; label = the *source dataset* (imagenet, cifar10, ...)."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        raise RuntimeError("foolbox is not installed: pip install --no-deps foolbox==3.3.4")
    data = os.path.join(list(spec.submodule_search_locations)[0], "data")
    files = sorted(glob.glob(os.path.join(data, "*.png")) + glob.glob(os.path.join(data, "*.jpg")))
    sources = ["imagenet", "cifar10", "cifar100", "mnist", "fashionMNIST"]
    images, labels = [], []
    for f in files:
        name = os.path.basename(f)
        src = name.split("_")[0]
        if src not in sources:
            continue
        images.append(np.asarray(Image.open(f).convert("RGB")))
        labels.append(sources.index(src))
    return images, np.asarray(labels, np.int64), sources


#: scikit-image's bundled photos used as instance "classes" (no download needed; ``cat`` is
#: ``chelsea`` again, ``colorwheel`` / ``logo`` are synthetic, ``horse`` is a silhouette)
SKIMAGE_PHOTOS = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "stereo_motorcycle", "text",
)
PATCHES_PER_PHOTO = 40


def load_patches():
    """Object-patch source: 40 seeded random square crops of each real photo; class = the photo.

    Photos: the 20 ImageNet-val images bundled with foolbox (224 px) and 17 of
    scikit-image's bundled photos. A crop's side is 35..60% of the photo's
    shorter side, at a random position, mirrored half of the time. Held-out
    photos are near-OOD "objects" of the same kind of imagery (natural photos),
    the case the 28x28 / 8x8 sources cannot show.
    """
    import importlib.util

    import skimage.data
    from PIL import Image

    photos, names = [], []
    for name in SKIMAGE_PHOTOS:
        im = getattr(skimage.data, name)()
        im = im[0] if isinstance(im, tuple) else im  # stereo_motorcycle: (left, right, disparity)
        photos.append(np.asarray(Image.fromarray(np.asarray(im)).convert("RGB")))
        names.append(f"skimage:{name}")
    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        raise RuntimeError("foolbox is not installed: pip install --no-deps foolbox==3.3.4")
    data = os.path.join(list(spec.submodule_search_locations)[0], "data")
    for f in sorted(glob.glob(os.path.join(data, "imagenet_*"))):
        photos.append(np.asarray(Image.open(f).convert("RGB")))
        names.append(f"imagenet:{os.path.basename(f)}")
    rng = np.random.default_rng(SEED)
    images, labels = [], []
    for c, im in enumerate(photos):
        h, w = im.shape[:2]
        for _ in range(PATCHES_PER_PHOTO):
            side = int(rng.uniform(0.35, 0.6) * min(h, w))
            y0, x0 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = im[y0:y0 + side, x0:x0 + side]
            images.append(crop[:, ::-1].copy() if rng.random() < 0.5 else crop)
            labels.append(c)
    return images, np.asarray(labels, np.int64), names


#: Debian ``tuxpaint-stamps-default`` (Tux Paint's stamp images); override with $OOD_BENCH_STAMPS_DIR
STAMPS_DIR = os.environ.get("OOD_BENCH_STAMPS_DIR", "/usr/share/tuxpaint/stamps")
#: the stamp folders used as classes: natural objects, mostly photographs cut out on a transparent background
STAMP_CLASSES = ("animals/birds", "animals/insects", "animals/mammals", "food/fruit", "food/vegetables",
                 "plants/flowers", "vehicles")


def load_stamps():
    """Natural-object source: Tux Paint's stamp images of 7 object categories; class = the category.

    Every PNG under each folder of :data:`STAMP_CLASSES` (sub-folders included:
    ``animals/mammals/apes/...`` is a mammal), composited on white and padded
    to a white square so the backbone's centre crop keeps the whole object.
    Most are photographs of a single animal, fruit, flower or vehicle, some are
    drawings; 18 (vegetables) to 67 (mammals) per class, 247 in all. The only
    class-level source of natural-object images offline: held-out categories
    (birds vs mammals, fruit vs vegetables) are near-OOD for natural imagery.
    """
    from PIL import Image

    if not os.path.isdir(STAMPS_DIR):
        raise RuntimeError(
            f"Tux Paint stamps not found in {STAMPS_DIR}: install the Debian package "
            "(sudo apt-get install --no-install-recommends tuxpaint-stamps-default) or set OOD_BENCH_STAMPS_DIR"
        )
    images, labels = [], []
    for c, folder in enumerate(STAMP_CLASSES):
        files = sorted(glob.glob(os.path.join(STAMPS_DIR, folder, "**", "*.png"), recursive=True))
        for f in files:
            im = Image.open(f).convert("RGBA")
            side = max(im.size)
            canvas = Image.new("RGB", (side, side), "white")
            canvas.paste(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2), mask=im.split()[3])
            images.append(np.asarray(canvas))
            labels.append(c)
    return images, np.asarray(labels, np.int64), list(STAMP_CLASSES)


LOADERS = {"fmnist": load_fmnist, "fmnist_test": load_fmnist_test, "digits": load_digits_images,
           "foolbox": load_foolbox, "patches": load_patches, "stamps": load_stamps}


def cache_path(source):
    key = f"{source}|{BACKBONE}|levels=all|pool|grid={GRID}|n={FMNIST_PER_CLASS}|seed={SEED}"
    if source == "patches":
        key += f"|photos={len(SKIMAGE_PHOTOS)}+imagenet|per={PATCHES_PER_PHOTO}"
    if source == "stamps":
        key += "|classes=" + ",".join(STAMP_CLASSES)
    h = hashlib.sha1(key.encode()).hexdigest()[:10]
    return os.path.join(CACHE_DIR, f"robust_{source}_{BACKBONE}_all_g{GRID}_{h}.npz")


def embed_source(source, batch_size=64):
    """Return dict(X (N, D) float32, y (N,), names, blocks [(start, stop)] per level)."""
    path = cache_path(source)
    if os.path.isfile(path):
        z = np.load(path, allow_pickle=False)
        return {
            "X": z["X"],
            "y": z["y"],
            "names": list(z["names"]),
            "blocks": [tuple(b) for b in z["blocks"]],
            "level_names": list(z["level_names"]),
        }
    import torch
    from PIL import Image

    from ood_core.features import PyramidExtractor

    torch.set_num_threads(1)
    images, y, names = LOADERS[source]()
    ext = PyramidExtractor(BACKBONE, levels=None, mode="pool", grid=GRID)
    t0 = time.time()
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = [Image.fromarray(np.asarray(im)) for im in images[start:start + batch_size]]
        chunks.append(ext.embed_images(batch))
        if (start // batch_size) % 10 == 0:
            print(f"  {source}: {start + len(batch)}/{len(images)} ({time.time() - t0:.0f} s)", flush=True)
    X = np.concatenate(chunks).astype(np.float32)
    sizes = [c * GRID * GRID for c in ext.channels]
    stops = np.cumsum(sizes)
    blocks = np.stack([stops - sizes, stops], axis=1)
    assert stops[-1] == X.shape[1], (stops, X.shape)
    os.makedirs(CACHE_DIR, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, X=X, y=y, names=np.array(names), blocks=blocks, level_names=np.array(ext.level_names))
    os.replace(tmp, path)
    print(f"  {source}: {X.shape} in {time.time() - t0:.0f} s -> {path}", flush=True)
    return embed_source(source)


if __name__ == "__main__":
    for s in sys.argv[1:] or list(LOADERS):
        embed_source(s)
