#!/usr/bin/env python
"""What reading a photo's ICC colour profile changes in the scores: wide-gamut and CMYK copies of real images.

Not a test: prints a table and writes ``benchmarks/results/colour_profiles.txt``.

A curator trusts sRGB images (a camera's, the web's) and scores a new batch from phones (Display P3) or cameras
set to Adobe RGB. On screen, in the App, the new images look like the old ones; in the files, their numbers are
those of a wider colour space. Each real image of two colour sources (``robust_data``: Tux Paint's natural-object
stamps, 7 categories, and the crops of 37 photos) is stored again in each wide space (its sRGB colours re-encoded,
8 bits, the profile embedded: ``tests/icc_helpers.py``) and as print CMYK (inks of a hand-built press profile whose
paper is not white, so its copies show other colours than the originals) and embedded twice: reading the profile
(the product now, ``ood_core.images.to_srgb``) and reading the raw numbers (the product before; for CMYK, Pillow's
ink formula). Per source, 3 class splits (about 60% of the classes trusted), half of each trusted class as the
labelled reference (sRGB), the other half and the held-out classes scored with the product default
(``PyramidKNNDetector``, trusted labels):

- ``OOD AUROC`` (positive = an image of a held-out class), the whole scored set stored in the space, against the
  same set as a viewer shows it (``sRGB``: the originals, or for CMYK the press's colours as sRGB files): how much
  the storage costs the detection;
- ``copy AUROC`` (positive = a stored copy), the scored in-distribution images once as shown and once as stored
  copies, scored together: 0.5 means the storage is invisible to the score, 1.0 that every copy outranks every
  image it copies.

Last, the time ``to_srgb`` takes on one 12-megapixel image, for an RGB profile and a CMYK one with a 17-point table
(as real press profiles have).

Run (embeds about 12,000 images: about 8 minutes on one thread)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/colour_profiles.py
"""

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.robust_data import BACKBONE, GRID, LOADERS  # noqa: E402
from benchmarks.robustness import load_sources  # noqa: E402
from ood_core.detectors.pyramid_knn import PyramidKNNDetector  # noqa: E402
from ood_core.metrics import ood_metrics  # noqa: E402
from tests.icc_helpers import (  # noqa: E402
    cmyk_profile, cmyk_to_linear_srgb, encode_srgb, rgb_profile, srgb_to_cmyk, srgb_to_rgb,
)

RESULTS = os.path.join(HERE, "results", "colour_profiles.txt")
SOURCES = ("stamps", "patches")
CMYK = "press CMYK"
SPACES = ("Display P3", "Adobe RGB (1998)", CMYK)
SPLITS = 3
SEED = 2026


def stored(px, space):
    """The PIL image of the sRGB array ``px`` stored in ``space`` (without its profile)."""
    from PIL import Image

    if space == CMYK:
        return Image.fromarray(srgb_to_cmyk(px.reshape(-1, 3)).reshape(*px.shape[:2], 4), "CMYK")
    return Image.fromarray(srgb_to_rgb(px.reshape(-1, 3), space).reshape(px.shape))


def shown(copy):
    """The sRGB PIL image a colour-managed viewer shows for a press CMYK ``copy`` (hand formula). (The RGB spaces
    hold every sRGB colour, so their copies show the original within a level of rounding; the press does not: its
    paper is not white.)"""
    from PIL import Image

    inks = np.asarray(copy)
    linear = cmyk_to_linear_srgb(inks.reshape(-1, 4))
    return Image.fromarray(np.round(encode_srgb(linear) * 255).astype(np.uint8).reshape(*inks.shape[:2], 3))


def embed(extractor, images, batch_size=64):
    """Embeddings of a list of PIL images."""
    chunks = [extractor.embed_images(images[start:start + batch_size]) for start in range(0, len(images), batch_size)]
    return np.concatenate(chunks).astype(np.float32)


def with_profile(copy, icc):
    """``copy`` (a PIL image) carrying the profile ``icc``, as its file would."""
    copy = copy.copy()
    copy.info["icc_profile"] = icc
    return copy


def auroc(s, positive):
    return ood_metrics(s, positive)["auroc"]


def conversion_times(size=(4000, 3000), repeats=3):
    """Seconds ``to_srgb`` takes on one ``size`` image of random pixels (best of ``repeats``; the transform built
    beforehand), per profile: Display P3, and the press CMYK with a 17-point table as real press profiles have."""
    from PIL import Image

    from ood_core.images import to_srgb

    rng = np.random.default_rng(SEED)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    rgb.info["icc_profile"] = rgb_profile("Display P3")
    cmyk = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "CMYK")
    cmyk.info["icc_profile"] = cmyk_profile(grid=17)
    out = {}
    for name, img in (("Display P3", rgb), ("CMYK, 17-point table", cmyk)):
        to_srgb(img.crop((0, 0, 8, 8)))  # builds the transform
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            to_srgb(img)
            times.append(time.perf_counter() - t)
        out[name] = min(times)
    return out


def main():
    import torch

    from ood_core.features import PyramidExtractor

    torch.set_num_threads(1)
    t0 = time.time()
    extractor = PyramidExtractor(BACKBONE, levels=None, mode="pool", grid=GRID)
    lines = ["colour profiles: the product default on wide-gamut and CMYK copies of real images "
             "(benchmarks/colour_profiles.py docstring); AUROC, OOD positive = held-out class, copy positive = the "
             "stored copy (0.5 = invisible); sRGB = as a viewer shows the set, raw = the file's numbers, read = "
             "through its profile",
             f"{'source':8} {'space':17} {'split':5} {'OOD sRGB':>8} {'OOD raw':>8} {'OOD read':>8} "
             f"{'copy raw':>8} {'copy read':>9}"]
    print("\n".join(lines), flush=True)
    summary = {}
    for source, S in load_sources(SOURCES).items():
        X, y = S.X, S.y
        images = [np.asarray(im) for im in LOADERS[source]()[0]]
        n_classes = int(y.max()) + 1
        for space in SPACES:
            icc = cmyk_profile() if space == CMYK else rgb_profile(space)
            copies = [stored(px, space) for px in images]
            wide = {False: embed(extractor, copies), True: embed(extractor, [with_profile(c, icc) for c in copies])}
            seen = X if space != CMYK else embed(extractor, [shown(c) for c in copies])
            for split in range(SPLITS):
                rng = np.random.default_rng([SEED, SOURCES.index(source), split])
                trusted = np.sort(rng.permutation(n_classes)[:round(0.6 * n_classes)])
                is_in = np.isin(y, trusted)
                ref = np.zeros(len(y), bool)
                for c in trusted:
                    rows = rng.permutation(np.flatnonzero(y == c))
                    ref[rows[:len(rows) // 2]] = True
                scored = ~ref
                ood = ~is_in[scored]
                score = PyramidKNNDetector(level_dims=S.level_dims).fit(X[ref], y[ref]).score_samples
                row = [auroc(score(seen[scored]), ood)]
                for managed in (False, True):
                    row.append(auroc(score(wide[managed][scored]), ood))
                id_rows = scored & is_in
                copy = np.r_[np.zeros(id_rows.sum(), bool), np.ones(id_rows.sum(), bool)]
                for managed in (False, True):
                    row.append(auroc(score(np.concatenate([seen[id_rows], wide[managed][id_rows]])), copy))
                summary.setdefault((source, space), []).append(row)
                line = (f"{source:8} {space:17} {split:5} " + " ".join(f"{v:8.3f}" for v in row[:4])
                        + f" {row[4]:9.3f}")
                lines.append(line)
                print(line, flush=True)
    lines.append("mean over the splits")
    for (source, space), rows in summary.items():
        m = np.mean(rows, axis=0)
        lines.append(f"{source:8} {space:17} {'mean':5} " + " ".join(f"{v:8.3f}" for v in m[:4]) + f" {m[4]:9.3f}")
    allm = np.mean([r for rows in summary.values() for r in rows], axis=0)
    lines.append(f"{'all':8} {'':17} {'mean':5} " + " ".join(f"{v:8.3f}" for v in allm[:4]) + f" {allm[4]:9.3f}")
    times = conversion_times()
    lines.append("to_srgb on one 12-megapixel image (4000 x 3000, best of 3): " + ", ".join(
        f"{name} {sec:.2f} s" for name, sec in times.items()))
    lines.append(f"wall time {time.time() - t0:.0f} s")
    print("\n".join(lines[-(len(summary) + 4):]), flush=True)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
