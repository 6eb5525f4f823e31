"""Benchmark: AdaNeg vs NegLabel on synthetic embeddings with a known right answer.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_adaneg.py [--seeds 5]

The data are those of ``bench_rap_protocol.py`` (dim 64, 10 ID classes, 8 OOD concepts,
half of them near-OOD; 400 ID + 400 OOD images in a seeded random order), with a
**dataset style**: every ID image gets ``style`` x one shared direction and every OOD
image ``style`` x another one (images of one dataset resemble each other beyond their
class, the premise AdaNeg's memory exploits); ``style=0`` has no such component.
NegLabel's negatives: the 300 words with the lowest 95th-percentile similarity to the ID
prompts, 10 groups. Reports mean AUROC (OOD positive) and FPR95 (OOD accepted at 95% ID
accepted) over seeds, for NegLabel and for AdaNeg over a small grid of ``gap`` x
``weight`` (the defaults, gap 0.25 and weight 1, sit in the flat part of this grid: a
synthetic choice, not the paper's values).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main():
    from bench_rap_protocol import synthetic, unit

    from ood_core.clip.adaneg import adaneg_scores
    from ood_core.clip.neglabel import neglabel_scores
    from ood_core.metrics import ood_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--style", type=float, default=0.3)
    args = parser.parse_args()
    rows = {}
    for seed in range(args.seeds):
        img, is_ood, ids, words, train = synthetic(seed)
        d_id, d_ood = unit(np.random.default_rng(100 + seed).normal(size=(2, img.shape[1])))
        img = unit(img + args.style * np.where(is_ood[:, None], d_ood, d_id)).astype(np.float32)
        neg = words[train]
        s_nl, ood_nl = neglabel_scores(img, ids, neg, num_groups=10, seed=seed)
        rows.setdefault("NegLabel", []).append(ood_metrics(ood_nl, is_ood))
        for gap in (0.1, 0.25, 0.4):
            for weight in (0.5, 1.0, 2.0):
                t = time.time()
                res = adaneg_scores(img, ids, neg, s_nl, gap=gap, weight=weight)
                m = ood_metrics(res.ood_scores, is_ood)
                m["seconds"] = time.time() - t
                m["cached"] = len(res.memory_samples)
                rows.setdefault(f"AdaNeg gap={gap} weight={weight}", []).append(m)
    print(f"synthetic embeddings, style {args.style}, {args.seeds} seeds: mean AUROC / FPR95 "
          "(/ memory entries, seconds)")
    for name, ms in rows.items():
        extra = "" if "cached" not in ms[0] else \
            f"  memory {np.mean([m['cached'] for m in ms]):5.1f}  {np.mean([m['seconds'] for m in ms]):.2f}s"
        print(f"  {name:28s} AUROC {np.mean([m['auroc'] for m in ms]):.3f}  "
              f"FPR95 {np.mean([m['fpr95'] for m in ms]):.3f}{extra}")


if __name__ == "__main__":
    main()
