"""RAP at test time: stream the samples, retrieve negative words from valuable OOD samples.

Algorithm 2 of Han et al. (RAP): the samples are processed in the given order, in
batches of ``batch_size``. For each batch:

1. **find valuable OOD samples**: S(x) = NegLabel's grouped ID score with the current
   negatives; a sample with ``u1 <= S(x) <= u2`` is valuable;
2. **retrieve**: for each valuable sample (in order), the Q = ``words_per_sample``
   candidate words most similar to its image embedding; ``retrieval="union"`` (paper)
   takes the top-Q of the whole vocabulary and unites them with the negatives (words
   that already are negatives add nothing); ``"new_only"`` takes the Q most similar
   words that are *not* negatives yet (always Q new words while the pool lasts);
3. **score**: ``rescore="online"`` (paper, streaming) scores the batch with the negatives
   as updated by that batch; ``"final"`` scores every sample at the end with the final
   negatives (earlier samples then profit from words later samples retrieved, so a
   score depends on samples that came after it).

The order, the batch size and the seed fully determine the result; the product's
FiftyOne layer processes samples in ascending sample-id order and records it.

u1/u2 are set per OOD set in the paper (Table 1); :data:`U_PRESETS` names them.
Scores: **ood_score = 1 - S, higher = more OOD**. Grouping: the negatives (train-time
ones, then test-time ones in the order added) are split into ``num_groups`` seeded
random groups; a random remainder is left out (``remainder="random"``): the official
"drop the last" rule would drop the newest test-time words first.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import OODInputError
from ..progress import Progress
from ..validation import check_same_dim, is_int
from .neglabel import DEFAULT_NUM_GROUPS, DEFAULT_TAU, neglabel_scores, unit_rows

DEFAULT_WORDS_PER_SAMPLE = 4
#: u1/u2 of the paper's Table 1, per OOD set (ID ImageNet-1k) or per ImageNet subset task
U_PRESETS = {
    "inaturalist": (0.5, 0.6),
    "sun": (0.2, 0.3),
    "places": (0.4, 0.5),
    "textures": (0.4, 0.6),
    "imagenet10_vs_20": (0.0, 0.5),
    "imagenet20_vs_10": (0.0, 0.2),
    "imagenet100_vs_10": (0.0, 0.2),
}
#: chosen by benchmarks/bench_rap_protocol.py (synthetic data + the tiny test model): see the README
DEFAULT_U_PRESET = "imagenet10_vs_20"
RESCORE_MODES = ("online", "final")
RETRIEVAL_MODES = ("union", "new_only")


def resolve_u(u_preset=DEFAULT_U_PRESET, u1=None, u2=None):
    """``(u1, u2)``: the preset's values, each overridden by an explicit number."""
    if u_preset not in U_PRESETS and (u1 is None or u2 is None):
        raise OODInputError(
            f"u_preset must be one of {sorted(U_PRESETS)} (the paper's settings per OOD set), unless both u1 "
            f"and u2 are given; got u_preset={u_preset!r}."
        )
    from ..validation import check_number

    preset = U_PRESETS.get(u_preset, (None, None))
    u1 = preset[0] if u1 is None else check_number(u1, "u1", hint=" (an ID score in [0, 1])")
    u2 = preset[1] if u2 is None else check_number(u2, "u2", hint=" (an ID score in [0, 1])")
    if not 0.0 <= u1 <= u2 <= 1.0:
        raise OODInputError(f"need 0 <= u1 <= u2 <= 1 (ID-score range); got u1={u1}, u2={u2}.")
    return u1, u2


def _top_k_by_index(values, k):
    """Indices of the k largest values, ties broken by lower index, best first.

    O(C) selection instead of a full sort: it runs once per valuable test sample.
    """
    kth = np.partition(values, values.size - k)[values.size - k]
    above = np.flatnonzero(values > kth)
    ties = np.flatnonzero(values == kth)[: k - above.size]
    top = np.concatenate([above, ties])
    return top[np.lexsort((top, -values[top]))]


@dataclass
class RAPResult:
    """Output of :func:`rap_scores`.

    ``ood_scores`` (N,) = 1 - ``id_scores``; higher = more OOD. ``train_negatives``:
    candidate indices from train time; ``test_negatives``: candidate indices added at
    test time in the order added; ``test_negative_sources``: the sample index that
    added each of them.
    """

    ood_scores: np.ndarray
    id_scores: np.ndarray
    train_negatives: np.ndarray
    test_negatives: np.ndarray
    test_negative_sources: np.ndarray

    @property
    def negatives(self):
        """All negatives used for the final scores: train-time then test-time."""
        return np.concatenate([self.train_negatives, self.test_negatives])


class NegativeSet:
    """The growing negative set of one test-time run (candidate indices, in the order added)."""

    def __init__(self, num_candidates, train, exclude=None):
        self.is_negative = np.zeros(num_candidates, dtype=bool)
        self.is_negative[train] = True
        self.allowed = np.ones(num_candidates, dtype=bool)
        if exclude is not None:
            self.allowed[np.asarray(list(exclude), dtype=np.int64)] = False
        self.order = list(np.asarray(train).tolist())
        self.added, self.sources = [], []

    def indices(self):
        return np.asarray(self.order, dtype=np.int64)

    def retrieve(self, sims, source, q, retrieval):
        """Add the words one valuable sample retrieves (``sims``: its cosine to every candidate)."""
        pool = self.allowed & ~self.is_negative if retrieval == "new_only" else self.allowed
        k = min(int(q), int(pool.sum()))
        if k == 0:
            return
        top = _top_k_by_index(np.where(pool, sims, -np.inf), k)
        new = top[~self.is_negative[top]]
        self.is_negative[new] = True
        self.order.extend(new.tolist())
        self.added.extend(new.tolist())
        self.sources.extend([int(source)] * new.size)


def _check_inputs(img_emb, id_emb, cand_emb, train_negatives, *, words_per_sample, batch_size, rescore,
                  retrieval):
    img = unit_rows(img_emb, "image embeddings")
    ids = unit_rows(id_emb, "ID prompt embeddings")
    cand = unit_rows(cand_emb, "candidate embeddings")
    check_same_dim(ids, img, "ID prompt (text) embeddings", "image embeddings")
    check_same_dim(ids, cand, "ID prompt embeddings", "candidate embeddings")
    train = np.asarray(train_negatives, dtype=np.int64).reshape(-1)
    if train.size == 0:
        raise OODInputError("train_negatives is empty: mine train-time negatives first.")
    if train.min() < 0 or train.max() >= cand.shape[0] or np.unique(train).size != train.size:
        raise OODInputError(
            f"train_negatives must be distinct indices in [0, {cand.shape[0]}) of the candidate embeddings.")
    if not is_int(words_per_sample) or words_per_sample < 1:
        raise OODInputError(f"words_per_sample must be a positive integer; got {words_per_sample!r}.")
    if not is_int(batch_size) or batch_size < 1:
        raise OODInputError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if rescore not in RESCORE_MODES:
        raise OODInputError(f"rescore must be one of {RESCORE_MODES} ('online' = the paper's streaming); "
                            f"got {rescore!r}.")
    if retrieval not in RETRIEVAL_MODES:
        raise OODInputError(f"retrieval must be one of {RETRIEVAL_MODES} ('union' = the paper's Algorithm 2); "
                            f"got {retrieval!r}.")
    return img, ids, cand, train


def rap_scores(img_emb, id_emb, cand_emb, train_negatives, *, test_time=True, u1=None, u2=None,
               u_preset=DEFAULT_U_PRESET, words_per_sample=DEFAULT_WORDS_PER_SAMPLE, batch_size=256,
               rescore="online", retrieval="union", exclude=None, tau=DEFAULT_TAU,
               num_groups=DEFAULT_NUM_GROUPS, seed=0, progress=False):
    """Score images with RAP's negatives, optionally updating them at test time.

    Args:
        img_emb: ``(N, D)`` image embeddings, processed in this order.
        id_emb: ``(K, D)`` ID prompt embeddings.
        cand_emb: ``(C, D)`` candidate word embeddings (the retrieval pool).
        train_negatives: candidate indices chosen at train time.
        test_time: False = train-time negatives only (plain grouped NegLabel score).
        u1, u2, u_preset: a sample with ``u1 <= S <= u2`` retrieves words; explicit
            u1/u2 override the preset's (:func:`resolve_u`).
        words_per_sample: Q, words retrieved per valuable sample.
        batch_size: samples per update step.
        rescore, retrieval: see the module docstring.
        exclude: candidate indices that must never become negatives.
        tau, num_groups, seed: NegLabel's grouped score parameters.
        progress: the package convention (:mod:`ood_core.progress`; default silent).
    """
    u1, u2 = resolve_u(u_preset, u1, u2)
    img, ids, cand, train = _check_inputs(img_emb, id_emb, cand_emb, train_negatives,
                                          words_per_sample=words_per_sample, batch_size=batch_size,
                                          rescore=rescore, retrieval=retrieval)

    def score(x, neg_idx):
        return neglabel_scores(x, ids, cand[neg_idx], tau=tau, num_groups=num_groups, seed=seed,
                               remainder="random")

    if not test_time:
        id_s, ood_s = score(img, train)
        empty = np.zeros(0, dtype=np.int64)
        return RAPResult(ood_s, id_s, train.copy(), empty, empty.copy())
    negatives = NegativeSet(cand.shape[0], train, exclude)
    id_scores, ood_scores = np.empty(img.shape[0]), np.empty(img.shape[0])
    with Progress(progress, img.shape[0], "RAP test-time scoring") as bar:
        for start in range(0, img.shape[0], int(batch_size)):
            x = img[start : start + int(batch_size)]
            id_s, _ = score(x, negatives.indices())
            valuable = np.flatnonzero((id_s >= u1) & (id_s <= u2))
            for local, sims in zip(valuable, x[valuable] @ cand.T):
                negatives.retrieve(sims, start + int(local), words_per_sample, retrieval)
            if rescore == "online":
                sl = slice(start, start + x.shape[0])
                id_scores[sl], ood_scores[sl] = score(x, negatives.indices())
            bar.update(x.shape[0])
    if rescore == "final":
        id_scores, ood_scores = score(img, negatives.indices())
    return RAPResult(ood_scores, id_scores, train.copy(), np.asarray(negatives.added, dtype=np.int64),
                     np.asarray(negatives.sources, dtype=np.int64))
