"""On-the-fly reduction of extracted embeddings (seeded random projection or PCA) and the items to embed."""

import numpy as np

from ..errors import OODInputError
from .items import item_names, patch_path


def projection_record(project_dim, method, seed, fit_size):
    """What a run records of its on-the-fly reduction (None: none), compared when the run is resumed."""
    if project_dim is None or project_dim == 0:
        return None
    record = {"method": method, "n_components": int(project_dim), "seed": int(seed)}
    return dict(record, fit_size=int(fit_size)) if method == "pca" else record


class Projection:
    """The on-the-fly reduction of extracted embeddings (none, seeded random, or PCA) and the storage dtype.

    ``record`` is what the run stores (None = no reduction); :meth:`apply`
    turns a batch of raw embeddings into stored rows. A PCA must be fitted
    (:meth:`fit_pca`) or restored from a run (:meth:`load_pca`) before use.
    """

    def __init__(self, record, out_dim, dtype, apply=None):
        self.record, self.out_dim, self.dtype, self._apply = record, out_dim, dtype, apply

    @classmethod
    def from_args(cls, in_dim, project_dim, method, seed, fit_size, dtype):
        from ..features import random_projection_matrix
        from ..reduction import LINEAR_REDUCERS
        from ..validation import check_positive_int

        # the settings are checked even without a reduction: a misspelt one is a mistake, not "no reduction"
        if not isinstance(method, str) or method not in LINEAR_REDUCERS:
            raise OODInputError(
                f"project_method={method!r} is not a reduction; pass project_method='random' (the default) or "
                "'pca' (it applies when project_dim is set)"
            )
        fit_size = check_positive_int(fit_size, "pca_fit_size")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise OODInputError(f"project_seed={seed!r} is not valid; pass an integer >= 0, e.g. project_seed=0")
        if project_dim is None or project_dim == 0:
            return cls(None, in_dim, dtype, apply=lambda e: e)
        project_dim = check_positive_int(project_dim, "project_dim")
        if int(project_dim) > in_dim:  # named here: the projection's own check calls it n_components
            what = "PCA" if method == "pca" else "a random projection"
            raise OODInputError(
                f"project_dim={project_dim} is larger than the embedding dimension {in_dim}; "
                f"{what} can only reduce: lower project_dim (at most {in_dim}), or leave it out"
            )
        record = projection_record(project_dim, method, seed, fit_size)
        if method == "random":
            matrix = random_projection_matrix(in_dim, int(project_dim), seed)
            return cls(record, int(project_dim), dtype, apply=lambda e: e @ matrix)
        return cls(record, int(project_dim), dtype)

    @property
    def is_pca(self):
        return self.record is not None and self.record["method"] == "pca"

    def fit_pca(self, extractor, samples, patches_field, extract):
        """Fit on a seeded sample of ``samples``; returns ``(stored state, raw fit embeddings by key, sample_of)``."""
        reducer, raw, sample_of = fit_pca(extractor, samples, patches_field, self.record, **extract)
        self._apply = reducer.transform
        return reducer.linear_state(), raw, sample_of

    def load_pca(self, state):
        from ..reduction import Reducer

        self._apply = Reducer.from_linear_state(state).transform

    def apply(self, emb):
        return self._apply(emb).astype(np.float16 if self.dtype == "float16" else np.float32)


def fit_pca(extractor, samples, patches_field, projection, *, batch_size, num_workers, skip_failures, progress):
    """Fit the on-the-fly PCA on a seeded sample of the view's items.

    Returns the fitted reducer, the raw embeddings of the fit items by key, and
    the sample id of each object key (patches) or None.
    """
    from ..reduction import Reducer

    keys, items, sample_of = embedding_items(samples, patches_field)
    n_fit = min(projection["fit_size"], len(items))
    if n_fit < projection["n_components"]:
        raise OODInputError(
            f"a PCA to {projection['n_components']} dimensions needs at least that many items to fit on; "
            f"pca_fit_size={projection['fit_size']} and the view has {len(items)} items. Lower project_dim, "
            "raise pca_fit_size, or use project_method='random'"
        )
    rng = np.random.default_rng(projection["seed"])
    pick = np.sort(rng.choice(len(items), n_fit, replace=False))
    # the error that stops at an unreadable image names its sample (object), as the extraction proper does
    res = extractor.extract([items[i] for i in pick], batch_size=batch_size, num_workers=num_workers,
                            skip_failures=skip_failures, progress=progress,
                            names=item_names([keys[i] for i in pick], sample_of))
    if len(res.embeddings) < projection["n_components"]:
        raise OODInputError(
            f"only {len(res.embeddings)} of the {n_fit} PCA fit images could be read; fewer than "
            f"project_dim={projection['n_components']}"
        )
    reducer = Reducer(method="pca", n_components=projection["n_components"], seed=projection["seed"])
    reducer.fit(res.embeddings)
    raw = {keys[pick[j]]: row for j, row in zip(res.ok_indices, res.embeddings)}
    return reducer, raw, sample_of


def embedding_items(samples, patches_field):
    """Keys (sample or object ids), image items, and the sample id of each key."""
    if patches_field is None:
        keys, paths = samples.values(["id", "filepath"])
        return keys, paths, None
    # one query for all four, so each sample's path, id, boxes and object ids come from the same document
    # (separate queries need not return one order, e.g. a view with a $sample stage)
    paths, sids, boxes, ids = samples.values(
        ["filepath", "id", patch_path(patches_field, "bounding_box"), patch_path(patches_field, "id")])
    keys, items, sample_of = [], [], {}
    for sid, path, sample_boxes, sample_ids in zip(sids, paths, boxes, ids):
        for box, det_id in zip(sample_boxes or [], sample_ids or []):
            keys.append(det_id)
            items.append((path, box))
            sample_of[det_id] = sid
    if not items:
        raise OODInputError(f"no objects in {patches_field!r} in this view: nothing to embed")
    return keys, items, sample_of
