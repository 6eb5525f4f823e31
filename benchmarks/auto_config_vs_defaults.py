"""Auto-config's choice vs the fixed defaults on the demo dataset (issue 4 measurement).

Run after the demo (``./setup.sh`` or ``python -m ood_core.demo``):

    .venv/bin/python benchmarks/auto_config_vs_defaults.py

It embeds the demo images once more with every EfficientNet-Lite0 level pooled
2x2 (so auto-config can choose levels), picks levels / PCA dims / k / detector on
300 labelled test samples, then compares, on the other 1,200 test samples, the
chosen config with the default pipeline (deepest level 2x2, k-NN k=50) that the
demo wrote to ``ood_knn``. Positive class = OOD (held-out classes).
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout


def main():
    import fiftyone as fo

    import ood_core as ood
    from ood_core.demo import DATASET_NAME
    from ood_core.metrics import format_metrics, ood_metrics

    ds = fo.load_dataset(DATASET_NAME)
    test = ds.match_tags("test")
    if not ds.has_field("ood_knn"):
        raise SystemExit("run the demo first: python -m ood_core.demo")
    t0 = time.time()
    ood.compute_pyramid_embeddings(ds, "emb_all_levels", model_name="tf_efficientnet_lite0",
                                      levels=[0, 1, 2, 3, 4], grid=2, overwrite=True, progress=False)
    print(f"embedded all levels (grid 2) in {time.time() - t0:.0f} s")

    validation = test.take(300, seed=0)
    val_ids = set(validation.values("id"))
    evaluation = test.exclude(list(val_ids))
    subsets = [[4], [3, 4], [2, 3, 4], [1, 2, 3, 4], [0, 1, 2, 3, 4], [0, 1, 2], [1, 2, 3]]
    t0 = time.time()
    chosen = ood.auto_config(
        ds, "emb_all_levels", validation=validation, reference="trusted", level_subsets=subsets,
        dims=(None, 64), k=(1, 10, 50), methods=("knn", "mahalanobis"), overwrite=True,
    )
    print(f"auto_config searched {len(chosen['table'])} configs in {time.time() - t0:.0f} s; "
          f"best on validation: {chosen['config']}")
    ood.score_with_config(ds, "ood_auto", "auto_config", overwrite=True)

    is_ood = np.array(evaluation.values("is_ood"), dtype=bool)
    default = ood_metrics(np.array(evaluation.values("ood_knn"), dtype=float), is_ood)
    auto = ood_metrics(np.array(evaluation.values("ood_auto"), dtype=float), is_ood)
    print(f"\nheld-out evaluation: {len(evaluation)} test samples not used for the choice")
    print("  defaults (deepest level 2x2, k-NN k=50): " + format_metrics(default))
    print("  auto_config choice:                      " + format_metrics(auto))


if __name__ == "__main__":
    main()
