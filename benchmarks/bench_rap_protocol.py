"""Benchmark: RAP's test-time protocol choices on synthetic embeddings and the tiny CLIP model.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_rap_protocol.py [--seeds 5] [--skip-tiny]

(a) **Synthetic embeddings with a known right answer** (dim 64, 10 ID classes): ID
images lie near their class prompt; OOD images near one of 8 OOD concepts, half of
them "near-OOD" (the concept leans towards an ID prompt, so NegLabel-style mining keeps
few of its words). Vocabulary: 40 words per concept, 20 per ID class, 1,000 generic.
Train-time negatives: the 300 words with the lowest 95th-percentile similarity to the ID
prompts (NegLabel's statistic, standing in for RAP's joint similarity). 400 ID + 400 OOD
images in a seeded random order, update batch 64, Q = 4, 10 groups. Reports AUROC (OOD
positive, score = 1 - S) and FPR95 (OOD accepted at 95% ID accepted) per u1/u2 preset,
for the paper's protocol (streaming + union) and the older readings.
(b) **Tiny random open_clip model** (the test fixture's architecture) on Fashion-MNIST:
ID = 5 classes, OOD = the other 5, 1 few-shot image per class, 2,000 WordNet words; a
random model has no semantics (AUROC ~ 0.5 is expected), so this part reports how many
samples each preset's window selects and how many words it adds through the real
pipeline.
"""

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def mix(rng, centre, weight, n):
    """n unit vectors with cosine about ``weight`` to ``centre``."""
    noise = unit(rng.normal(size=(n, centre.shape[-1])))
    return unit(weight * centre + np.sqrt(1 - weight**2) * noise)


def synthetic(seed, dim=64, k=10, n_concepts=8, lean=0.6):
    rng = np.random.default_rng(seed)
    ids = unit(rng.normal(size=(k, dim)))
    concepts = unit(rng.normal(size=(n_concepts, dim)))
    near = np.arange(n_concepts) % 2 == 0  # near-OOD concepts lean towards an ID prompt
    concepts[near] = unit(lean * ids[np.arange(n_concepts)[near] % k] + np.sqrt(1 - lean**2) * concepts[near])
    words = np.vstack([*(mix(rng, c, 0.75, 40) for c in concepts), *(mix(rng, y, 0.75, 20) for y in ids),
                       unit(rng.normal(size=(1000, dim)))])
    img_id = np.vstack([mix(rng, ids[i % k], 0.45, 1) for i in range(400)])
    img_ood = np.vstack([mix(rng, concepts[i % n_concepts], 0.45, 1) for i in range(400)])
    img = np.vstack([img_id, img_ood]).astype(np.float32)
    is_ood = np.r_[np.zeros(400, bool), np.ones(400, bool)]
    order = rng.permutation(800)
    stat = np.percentile(words @ ids.T, 95, axis=1)
    train = np.argsort(stat, kind="stable")[:300]
    return img[order], is_ood[order], ids.astype(np.float32), words.astype(np.float32), train


def bench_synthetic(seeds):
    from ood_core.clip.rap_stream import U_PRESETS, rap_scores
    from ood_core.metrics import ood_metrics

    settings = [("train-time only", dict(test_time=False))]
    settings += [(f"{p} {u}: online+union", dict(u_preset=p)) for p, u in U_PRESETS.items()]
    settings += [("imagenet10_vs_20: final+union", dict(u_preset="imagenet10_vs_20", rescore="final")),
                 ("imagenet10_vs_20: online+new_only", dict(u_preset="imagenet10_vs_20", retrieval="new_only")),
                 ("imagenet10_vs_20: final+new_only (old default)",
                  dict(u_preset="imagenet10_vs_20", rescore="final", retrieval="new_only"))]
    print(f"(a) synthetic embeddings, {len(seeds)} seeds: mean AUROC / FPR95 / words added")
    for name, kw in settings:
        aurocs, fprs, added = [], [], []
        for seed in seeds:
            img, is_ood, ids, words, train = synthetic(seed)
            res = rap_scores(img, ids, words, train, batch_size=64, num_groups=10, seed=seed, **kw)
            m = ood_metrics(res.ood_scores, is_ood)
            aurocs.append(m["auroc"])
            fprs.append(m["fpr95"])
            added.append(res.test_negatives.size)
        print(f"  {name:52s} AUROC {np.mean(aurocs):.3f}  FPR95 {np.mean(fprs):.3f}  words {np.mean(added):6.1f}")


def fashion(n_per_class, seed):
    root = Path("/usr/share/datasets/fashion-mnist")
    with gzip.open(root / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(root / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), n_per_class, replace=False) for c in range(10)])
    return images[idx], labels[idx]


def bench_tiny(seed=0):
    from PIL import Image

    from bench_neglabel import tiny_checkpoint
    from ood_core.clip.encoder import CLIPEncoder
    from ood_core.clip.lexicon import load_lexicon, Lexicon
    from ood_core.clip.rap import RAPScorer
    from ood_core.clip.rap_stream import U_PRESETS
    from ood_core.metrics import ood_metrics

    names = ["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
    with tempfile.TemporaryDirectory() as tmp:
        enc = CLIPEncoder("bench-tiny-clip", pretrained=str(tiny_checkpoint(Path(tmp))))
        lex = load_lexicon(cache_dir=tmp)
        pick = np.sort(np.random.default_rng(seed).choice(len(lex), 2000, replace=False))
        lex = Lexicon([lex.words[i] for i in pick], [lex.pos[i] for i in pick], vocabulary="paper")
        imgs, labels = fashion(40, seed)
        pil = [Image.fromarray(a).convert("RGB") for a in imgs]
        X = enc.encode_images(pil, batch_size=64)
        order = np.random.default_rng(seed).permutation(len(X))
        X, labels = X[order], labels[order]
        is_ood = labels >= 5
        few = [int(np.flatnonzero(labels == c)[0]) for c in range(5)]
        print("(b) tiny random open_clip model, Fashion-MNIST 5 ID / 5 OOD classes, 2,000 WordNet words")
        for preset in U_PRESETS:
            sc = RAPScorer(num_crops=32, num_keep=8, num_negatives=1000, u_preset=preset, batch_size=64, seed=seed)
            t = time.time()
            sc.fit(names[:5], [pil[order[i]] for i in few], enc, lex, few_shot_labels=[names[labels[i]] for i in few],
                   cache_dir=tmp, progress=False)
            res = sc.score_samples(X)
            base = sc.score_samples(X, test_time=False)
            s_train = base.id_scores
            window = np.mean((s_train >= sc.thresholds[0]) & (s_train <= sc.thresholds[1]))
            print(f"  {preset:18s} S in window {window:5.1%}  words added {res.test_negatives.size:4d}  "
                  f"AUROC {ood_metrics(res.ood_scores, is_ood)['auroc']:.3f} "
                  f"(train-time only {ood_metrics(base.ood_scores, is_ood)['auroc']:.3f})  {time.time() - t:.1f}s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--skip-tiny", action="store_true")
    args = parser.parse_args()
    bench_synthetic(range(args.seeds))
    if not args.skip_tiny:
        bench_tiny()


if __name__ == "__main__":
    main()
