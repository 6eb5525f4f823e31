"""NegLabel: zero-shot OOD detection with CLIP and mined negative labels.

Jiang et al., "Negative Label Guided OOD Detection with Pretrained Vision-Language
Models", ICLR 2024.

1. **Mining** (:func:`mine_negatives`): every candidate word ``n`` (WordNet nouns and
   adjectives, embedded with prompts) gets ``d(n) = percentile_p {cos(n, y_k)}_k`` over
   the K ID-label embeddings ``y_k`` (p = 95). The candidates with the *smallest* d,
   i.e. far from every ID label, become negatives: the lowest 15% of nouns and 15% of
   adjectives, or ``num_negatives`` in total.
2. **Score** (:func:`neglabel_id_score`), higher = more in-distribution::

       S(x) = sum_i exp(cos(x, y_i)/tau) / (sum_i exp(cos(x, y_i)/tau) + sum_j exp(cos(x, n_j)/tau))

   with tau = 0.01. **Grouping** (official code): the ``M mod Ng`` last negatives of
   the mined order (the most ID-like) are dropped, the rest is shuffled with a fixed
   seed and split into Ng equal groups, S is computed
   against each group (all ID labels every time) and averaged.
3. This package reports **ood_score = 1 - S** (higher = more OOD), see
   :func:`neglabel_ood_score`.

Everything is computed on unit vectors (inputs are L2-normalised here), in batches of
images so memory stays bounded, and with log-sum-exp so that cos/tau up to 100 never
overflows: ``1 - S_g = sigmoid(logB_g - logA)`` with ``logA = LSE_i(cos(x,y_i)/tau)``
and ``logB_g = LSE_{j in g}(cos(x,n_j)/tau)``.

One ID class is allowed: the formula is well defined for K = 1 (it then measures
whether x matches that one label better than the negatives); class prediction is then
trivially that class with confidence 1. An empty ID list is an error.
"""

import numpy as np

from ..errors import NotFittedError, OODInputError
from ..validation import as_embeddings, check_flag, check_number, check_same_dim, is_int

#: NegLabel's prompt templates (official implementation defaults).
ID_TEMPLATE = "the nice {}"
NOUN_TEMPLATE = "the nice {}"
ADJ_TEMPLATE = "This is a {} photo"
DEFAULT_TEMPLATES = {"noun": NOUN_TEMPLATE, "adj": ADJ_TEMPLATE}

DEFAULT_TAU = 0.01
DEFAULT_NUM_GROUPS = 100
DEFAULT_PERCENTILE = 95.0
DEFAULT_FRACTION = 0.15

# Work arrays are kept near this many float32 values (about 64 MB).
_WORK_ELEMENTS = 1 << 24


def unit_rows(X, name):
    """Validate ``X`` as embeddings and L2-normalise each row (zero rows are an error)."""
    X = as_embeddings(X, name)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise OODInputError(
            f"{name} has {zero.size} all-zero row(s) (first: {zero[:5].tolist()}); a zero "
            "vector has no direction, so cosine similarity is undefined. Recompute them."
        )
    return X / norms


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis)


def _sigmoid(z):
    # exp(-log(1 + exp(-z))): exact for large |z| where 1/(1+exp(-z)) over/underflows.
    return np.exp(-np.logaddexp(0.0, -z))


def _batch_rows(num_cols):
    return max(1, _WORK_ELEMENTS // max(1, num_cols))


def plain_params(value):
    """``value`` with numpy scalars and arrays turned into Python numbers and lists (tuples too), recursively.

    A run record is JSON: a setting given as a numpy number (``seed=np.int64(1)`` from a sweep over
    ``np.arange``) stopped the run with "Object of type int64 is not JSON serializable" after all the work.
    """
    if isinstance(value, dict):
        return {k: plain_params(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain_params(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_tau(tau):
    if not np.isfinite(tau) or tau <= 0:
        raise OODInputError(f"tau must be a positive number (NegLabel uses 0.01); got {tau!r}.")


# ---------------------------------------------------------------------- mining
def candidate_id_similarity(id_emb, cand_emb, *, percentile=DEFAULT_PERCENTILE):
    """Per candidate, the ``percentile`` of its cosine similarities to the ID labels.

    Returns ``(C,)`` float32; low values = far from every ID label. Linear interpolation
    between order statistics (numpy's default); with one ID label it is that similarity.
    """
    id_emb = unit_rows(id_emb, "ID label embeddings")
    cand_emb = unit_rows(cand_emb, "candidate embeddings")
    check_same_dim(id_emb, cand_emb, "ID label embeddings", "candidate embeddings")
    if not 0 <= percentile <= 100:
        raise OODInputError(f"percentile must be in [0, 100]; got {percentile!r}.")
    out = np.empty(cand_emb.shape[0], dtype=np.float32)
    step = _batch_rows(id_emb.shape[0])
    for s in range(0, cand_emb.shape[0], step):
        sims = cand_emb[s : s + step] @ id_emb.T
        out[s : s + step] = np.percentile(sims, percentile, axis=1)
    return out


def _split_counts(total, sizes):
    """Split ``total`` across groups proportionally to ``sizes`` (largest remainder)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    exact = total * sizes / sizes.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    for i in order[: total - counts.sum()]:
        counts[i] += 1
    return np.minimum(counts, sizes.astype(int))


def mine_negatives(
    id_emb,
    cand_emb,
    cand_pos,
    *,
    percentile=DEFAULT_PERCENTILE,
    fraction=None,
    num_negatives=None,
    skip=None,
):
    """Select negative labels: the candidates least similar to the ID label space.

    Args:
        id_emb: ``(K, D)`` ID-label text embeddings.
        cand_emb: ``(C, D)`` candidate text embeddings.
        cand_pos: ``C`` part-of-speech tags (``"noun"``/``"adj"``); selection is done
            per POS so the noun/adjective mix follows the candidate pool.
        percentile: percentile of the similarities to the K ID labels (default 95).
        fraction: share of each POS to keep (default 0.15 when ``num_negatives`` is
            not given): ``floor(fraction * count)`` per POS.
        num_negatives: total M instead of ``fraction``, split across POS in proportion
            to their candidate counts (largest remainder). Give one or the other.
        skip: boolean mask of candidates that count in the pool (the counts above) but are
            never chosen; the next least similar candidate takes their place (the ID class
            names the official protocol keeps among the candidates).

    Returns:
        ``(M,)`` int64 indices into the candidates, ordered from least to most similar
        to the ID labels (ties by candidate index).
    """
    cand_emb = unit_rows(cand_emb, "candidate embeddings")
    cand_pos = np.asarray(list(cand_pos), dtype=object)
    n_cand = cand_emb.shape[0]
    if cand_pos.shape[0] != n_cand:
        raise OODInputError(
            f"cand_pos has {cand_pos.shape[0]} tags but cand_emb has {n_cand} rows; "
            "give one POS tag per candidate embedding."
        )
    if fraction is not None and num_negatives is not None:
        raise OODInputError("give either fraction or num_negatives, not both.")
    score = candidate_id_similarity(id_emb, cand_emb, percentile=percentile)
    kinds = [p for p in dict.fromkeys(cand_pos.tolist())]
    members = {p: np.flatnonzero(cand_pos == p) for p in kinds}
    if num_negatives is None:
        fraction = DEFAULT_FRACTION if fraction is None else float(fraction)
        if not 0 < fraction <= 1:
            raise OODInputError(f"fraction must be in (0, 1]; got {fraction!r}.")
        counts = {p: int(np.floor(fraction * members[p].size)) for p in kinds}
    else:
        n_allowed = n_cand if skip is None else int(n_cand - np.count_nonzero(skip))
        if not is_int(num_negatives) or not 1 <= num_negatives <= n_allowed:
            raise OODInputError(
                f"num_negatives must be an integer in [1, {n_allowed}] (the number of "
                f"candidates{'' if skip is None else ' that name no ID class'}); got {num_negatives!r}."
            )
        split = _split_counts(int(num_negatives), [members[p].size for p in kinds])
        counts = dict(zip(kinds, split.tolist()))
    allowed = np.ones(n_cand, dtype=bool) if skip is None else ~np.asarray(skip, dtype=bool)
    chosen = []
    for p in kinds:
        idx = members[p]
        order = idx[np.argsort(score[idx], kind="stable")]
        order = order[allowed[order]]
        chosen.append(order[: counts[p]])
    chosen = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    if chosen.size == 0:
        raise OODInputError(
            f"no negatives selected from {n_cand} candidates (fraction={fraction}); "
            "use a larger vocabulary, a larger fraction or num_negatives."
        )
    chosen = chosen[np.lexsort((chosen, score[chosen]))]
    return chosen.astype(np.int64)


# ---------------------------------------------------------------------- scoring
REMAINDERS = ("last", "random")


def group_negatives(num_negatives, num_groups=DEFAULT_NUM_GROUPS, seed=0, remainder="last"):
    """``(num_groups, M // num_groups)`` indices: a seeded shuffle split into equal groups.

    ``M mod num_groups`` negatives are left out. ``remainder="last"`` (the official
    NegLabel code) leaves out the **last** ones of the given order before shuffling: in
    mined order (least ID-like first) those are the most ID-like. ``"random"`` shuffles
    all M first and leaves out the last of the shuffled order.
    """
    if not is_int(num_groups) or num_groups < 1:
        raise OODInputError(f"num_groups must be a positive integer; got {num_groups!r}.")
    if remainder not in REMAINDERS:
        raise OODInputError(f"remainder must be one of {REMAINDERS}; got {remainder!r}.")
    if not is_int(seed) or seed < 0:
        raise OODInputError(f"seed={seed!r} is not valid; pass a whole number >= 0.")
    if num_negatives < num_groups:
        raise OODInputError(
            f"num_groups={num_groups} is larger than the number of negative labels "
            f"({num_negatives}); every group needs at least one negative. Lower num_groups "
            "or mine more negatives."
        )
    size = num_negatives // num_groups
    used = size * int(num_groups)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(used) if remainder == "last" else rng.permutation(num_negatives)[:used]
    return perm.reshape(int(num_groups), size)


def _grouped_log_terms(img, id_emb, neg_grouped, tau, batch_size):
    """Yield ``(slice, logA (B,), logB (B, G))`` per image batch (unit inputs)."""
    G, m = neg_grouped.shape[:2]
    flat = neg_grouped.reshape(G * m, -1)
    step = batch_size or _batch_rows(max(G * m, id_emb.shape[0]))
    for s in range(0, img.shape[0], step):
        x = img[s : s + step]
        log_a = _logsumexp((x @ id_emb.T) / tau, axis=1)
        # In place on the one (B, M) work array: fewer allocations, less page faulting.
        neg = (x @ flat.T).reshape(x.shape[0], G, m)
        neg *= np.float32(1.0 / tau)
        peak = neg.max(axis=2, keepdims=True)
        neg -= peak
        np.exp(neg, out=neg)
        log_b = np.log(neg.sum(axis=2)) + peak[:, :, 0]
        yield slice(s, s + x.shape[0]), log_a, log_b


def _prepare(img_emb, id_emb, neg_emb, tau, num_groups, seed, remainder):
    _check_tau(tau)
    img = unit_rows(img_emb, "image embeddings")
    ids = unit_rows(id_emb, "ID label embeddings")
    neg = unit_rows(neg_emb, "negative label embeddings")
    check_same_dim(ids, img, "ID label (text) embeddings", "image embeddings")
    check_same_dim(ids, neg, "ID label embeddings", "negative label embeddings")
    groups = group_negatives(neg.shape[0], num_groups, seed, remainder)
    return img, ids, neg[groups]


def neglabel_scores(img_emb, id_emb, neg_emb, *, tau=DEFAULT_TAU,
                    num_groups=DEFAULT_NUM_GROUPS, seed=0, batch_size=None, remainder="last"):
    """Return ``(id_score, ood_score)``, both ``(N,)`` float64, ``ood = 1 - id``.

    Each is computed directly in its own stable form (no cancellation in ``1 - S``).
    ``remainder``: see :func:`group_negatives` (``neg_emb`` in mined order: "last"
    leaves out the most ID-like, as the official code does).
    """
    img, ids, grouped = _prepare(img_emb, id_emb, neg_emb, tau, num_groups, seed, remainder)
    id_score = np.empty(img.shape[0])
    ood_score = np.empty(img.shape[0])
    for sl, log_a, log_b in _grouped_log_terms(img, ids, grouped, tau, batch_size):
        diff = log_a.astype(np.float64)[:, None] - log_b.astype(np.float64)
        id_score[sl] = _sigmoid(diff).mean(axis=1)
        ood_score[sl] = _sigmoid(-diff).mean(axis=1)
    return id_score, ood_score


def neglabel_id_score(img_emb, id_emb, neg_emb, *, tau=DEFAULT_TAU,
                      num_groups=DEFAULT_NUM_GROUPS, seed=0, batch_size=None, remainder="last"):
    """NegLabel's S(x), averaged over ``num_groups`` seeded groups; higher = more ID."""
    return neglabel_scores(img_emb, id_emb, neg_emb, tau=tau, num_groups=num_groups,
                           seed=seed, batch_size=batch_size, remainder=remainder)[0]


def neglabel_ood_score(img_emb, id_emb, neg_emb, *, tau=DEFAULT_TAU,
                       num_groups=DEFAULT_NUM_GROUPS, seed=0, batch_size=None, remainder="last"):
    """``1 - S(x)`` in [0, 1]; **higher = more out-of-distribution**."""
    return neglabel_scores(img_emb, id_emb, neg_emb, tau=tau, num_groups=num_groups,
                           seed=seed, batch_size=batch_size, remainder=remainder)[1]


def predict_id_class(img_emb, id_emb, *, tau=DEFAULT_TAU):
    """Zero-shot ID classification: ``(class index (N,) int64, confidence (N,) float64)``.

    Confidence is the softmax over ``cos(x, y_i) / tau`` of the predicted class.
    """
    _check_tau(tau)
    img = unit_rows(img_emb, "image embeddings")
    ids = unit_rows(id_emb, "ID label embeddings")
    check_same_dim(ids, img, "ID label (text) embeddings", "image embeddings")
    cls = np.empty(img.shape[0], dtype=np.int64)
    conf = np.empty(img.shape[0])
    step = _batch_rows(ids.shape[0])
    for s in range(0, img.shape[0], step):
        logits = (img[s : s + step] @ ids.T).astype(np.float64) / tau
        cls[s : s + step] = np.argmax(logits, axis=1)
        conf[s : s + step] = np.exp(logits.max(axis=1) - _logsumexp(logits, axis=1))
    return cls, conf


def explain(img_emb_row, id_emb, id_names, neg_emb, neg_words, *, top=5):
    """Top-``top`` ID labels and negative labels for one image, with cosine similarities.

    Returns ``{"id_labels": [{"label", "similarity"}...], "negative_labels": [...]}``
    sorted by decreasing similarity (JSON-serialisable).
    """
    x = unit_rows(np.asarray(img_emb_row).reshape(1, -1), "image embedding")
    ids = unit_rows(id_emb, "ID label embeddings")
    neg = unit_rows(neg_emb, "negative label embeddings")
    check_same_dim(ids, x, "ID label (text) embeddings", "image embedding")
    check_same_dim(ids, neg, "ID label embeddings", "negative label embeddings")
    if len(id_names) != ids.shape[0] or len(neg_words) != neg.shape[0]:
        raise OODInputError(
            f"got {len(id_names)} ID names for {ids.shape[0]} ID embeddings and "
            f"{len(neg_words)} negative words for {neg.shape[0]} negative embeddings; "
            "names and embeddings must match one to one."
        )
    if int(top) < 1:
        raise OODInputError(f"top must be >= 1; got {top!r}.")

    def best(emb, names):
        sims = (emb @ x[0]).astype(np.float64)
        k = min(int(top), sims.size)
        idx = np.argsort(-sims, kind="stable")[:k]
        return [{"label": str(names[i]), "similarity": float(sims[i])} for i in idx]

    return {"id_labels": best(ids, list(id_names)), "negative_labels": best(neg, list(neg_words))}


def check_id_names(id_names):
    """Validate ID class names: non-empty list of distinct strings, each with a letter or digit."""
    from .lexicon import normalize_word, require_wordy_names

    if isinstance(id_names, str):
        raise OODInputError("id_names must be a list of class names, not a single string.")
    names = list(id_names) if id_names is not None else []
    if not names:
        raise OODInputError(
            "id_names is empty: NegLabel needs at least one in-distribution class name "
            "(e.g. the distinct values of the label field)."
        )
    bad = [n for n in names if not isinstance(n, str) or not normalize_word(n)]
    if bad:
        hint = ("; write each as a string, e.g. id_labels="
                f"{[str(n) for n in bad[:5] if isinstance(n, (int, float, np.number))]!r}"
                if any(isinstance(n, (int, float, np.number)) for n in bad) else "")
        raise OODInputError(f"ID class names must be non-empty strings; got {bad[:5]!r}{hint}.")
    require_wordy_names(names)
    first, dupes = {}, []
    for n in names:
        key = normalize_word(n)
        if key in first:
            dupes.append((n, first[key]))
        first.setdefault(key, n)
    if dupes:
        raise OODInputError(
            f"ID class names must be distinct (case-insensitive, '_' = space); duplicates: "
            f"{[n for n, _ in dupes[:5]]!r} ({', '.join(f'{n!r} repeats {f!r}' for n, f in dupes[:5])}). A "
            "duplicated class would be counted twice in S(x): keep one of them.")
    return names


def id_name_mask(words, id_names, *, keep):
    """Boolean mask over ``words``: which candidates stay in the pool.

    ``keep=False`` drops every word that names an ID class (case-insensitive, ``_`` = space,
    alternatives and singulars: :func:`~ood_core.clip.lexicon.id_name_keys`); ``keep=True`` keeps all.
    """
    from .lexicon import id_name_keys, names_id_class

    if keep:
        return np.ones(len(words), dtype=bool)
    banned = id_name_keys(id_names)
    return np.array([not names_id_class(w, banned) for w in words], dtype=bool)


# ---------------------------------------------------------------------- estimator
class NegLabelScorer:
    """NegLabel as an estimator: ``fit`` on ID class names, ``score_samples`` on images.

    ``fit(id_names, encoder, lexicon)`` embeds the prompts (the whole vocabulary through
    the disk cache), drops candidates equal to an ID class name by index and mines
    negatives; ``fit_embeddings`` does the same from precomputed text embeddings.

    Paper protocol by default (the official code's defaults): ID class names stay in
    the candidates (``remove_id_names=False``; they count in the pool but are never
    mined) and ``remainder="last"`` drops the
    ``M mod num_groups`` most ID-like mined words at fit time, so every negative kept
    is used in exactly one group. ``remainder="random"`` keeps all mined words and
    leaves a random remainder out of the groups at scoring time.

    Fitted attributes: ``id_names_``, ``id_emb_`` (K, D), ``negative_words_``,
    ``negative_pos_``, ``negative_emb_`` (M, D), ``negative_similarity_`` (the mining
    percentile of each negative), ``num_candidates_``, ``excluded_words_``, ``id_name_candidates_``
    (candidates naming an ID class kept in the pool but never mined),
    ``num_mined_``, ``dropped_words_`` (the remainder left out at fit time).
    """

    def __init__(self, *, tau=DEFAULT_TAU, num_groups=DEFAULT_NUM_GROUPS, seed=0,
                 percentile=DEFAULT_PERCENTILE, fraction=None, num_negatives=None,
                 id_template=ID_TEMPLATE, noun_template=NOUN_TEMPLATE,
                 adj_template=ADJ_TEMPLATE, remove_id_names=False, remainder="last"):
        if remainder not in REMAINDERS:
            raise OODInputError(f"remainder must be one of {REMAINDERS}; got {remainder!r}.")
        check_number(percentile, "percentile", low=0, high=100, hint=" (the paper's 95)")
        if fraction is not None:
            check_number(fraction, "fraction", low=0, high=1, low_open=True, hint=" (a share of each part of "
                         "speech, e.g. 0.15), or None")
        self.remove_id_names = check_flag(remove_id_names, "remove_id_names")
        self.remainder = remainder
        self.tau = tau
        self.num_groups = num_groups
        self.seed = seed
        self.percentile = percentile
        self.fraction = fraction
        self.num_negatives = num_negatives
        self.id_template = id_template
        self.noun_template = noun_template
        self.adj_template = adj_template

    def get_params(self):
        """JSON-serialisable hyperparameters (for run records)."""
        return plain_params({
            "tau": self.tau, "num_groups": self.num_groups, "seed": self.seed,
            "percentile": self.percentile, "fraction": self.fraction,
            "num_negatives": self.num_negatives, "id_template": self.id_template,
            "noun_template": self.noun_template, "adj_template": self.adj_template,
            "remove_id_names": self.remove_id_names, "remainder": self.remainder,
        })

    @property
    def templates(self):
        return {"noun": self.noun_template, "adj": self.adj_template}

    def fit(self, id_names, encoder, lexicon, *, cache_dir=None, progress=None,
            text_batch_size=256):
        """Embed the ID prompts and the **whole** vocabulary, then mine; returns self.

        The candidate embeddings go through the disk cache keyed by the vocabulary
        alone (not by the ID classes), so changing the ID classes reuses them; ID class
        names are handled afterwards, by index (:meth:`fit_embeddings`).
        ``progress``: the package convention (:mod:`ood_core.progress`), for the
        candidate prompts on a cache miss.
        """
        from .text_cache import cached_text_embeddings

        id_names = check_id_names(id_names)
        cand_emb = cached_text_embeddings(
            encoder, lexicon.words, lexicon.pos, self.templates, cache_dir=cache_dir,
            progress=progress, batch_size=text_batch_size,
        )
        id_emb = encoder.encode_texts([self.id_template.format(n) for n in id_names],
                                      batch_size=text_batch_size)
        return self.fit_embeddings(id_names, id_emb, lexicon.words, lexicon.pos, cand_emb)

    def fit_embeddings(self, id_names, id_emb, cand_words, cand_pos, cand_emb):
        """Mine negatives from precomputed, aligned text embeddings; returns self.

        With ``remove_id_names``, candidates equal to an ID name (case-insensitive) are
        removed first (by index).
        """
        id_names = check_id_names(id_names)
        id_emb = unit_rows(id_emb, "ID label embeddings")
        cand_emb = unit_rows(cand_emb, "candidate embeddings")
        cand_words, cand_pos = list(cand_words), list(cand_pos)
        if id_emb.shape[0] != len(id_names):
            raise OODInputError(
                f"{len(id_names)} ID names but {id_emb.shape[0]} ID embeddings; they must "
                "match one to one."
            )
        if not (len(cand_words) == len(cand_pos) == cand_emb.shape[0]):
            raise OODInputError(
                f"candidates: {len(cand_words)} words, {len(cand_pos)} POS tags and "
                f"{cand_emb.shape[0]} embeddings; all three must have the same length."
            )
        check_same_dim(id_emb, cand_emb, "ID label embeddings", "candidate embeddings")
        keep = id_name_mask(cand_words, id_names, keep=not self.remove_id_names)
        self.excluded_words_ = [w for w, k in zip(cand_words, keep) if not k]
        cand_emb = cand_emb[keep]
        cand_words = [w for w, k in zip(cand_words, keep) if k]
        cand_pos = [p for p, k in zip(cand_pos, keep) if k]
        if not cand_words:
            raise OODInputError("no candidate words remain after removing ID class names.")
        # Kept ID class names count in the pool (the official M) but are never mined: with many classes the 95th
        # percentile of a name's similarities ignores its own class, and it would be a negative of that class.
        names_id = ~id_name_mask(cand_words, id_names, keep=False)
        self.id_name_candidates_ = [w for w, n in zip(cand_words, names_id) if n]
        idx = mine_negatives(
            id_emb, cand_emb, cand_pos, percentile=self.percentile,
            fraction=self.fraction, num_negatives=self.num_negatives, skip=names_id,
        )
        if idx.size < self.num_groups:
            raise OODInputError(
                f"only {idx.size} negatives were mined but num_groups={self.num_groups}; "
                "lower num_groups or use a larger vocabulary/fraction."
            )
        self.num_mined_ = int(idx.size)
        used = idx.size - (idx.size % int(self.num_groups) if self.remainder == "last" else 0)
        self.dropped_words_ = [cand_words[i] for i in idx[used:]]  # mined order: the most ID-like
        idx = idx[:used]
        sims = candidate_id_similarity(id_emb, cand_emb[idx], percentile=self.percentile)
        self.id_names_ = list(id_names)
        self.id_emb_ = id_emb
        self.negative_words_ = [cand_words[i] for i in idx]
        self.negative_pos_ = [cand_pos[i] for i in idx]
        self.negative_emb_ = cand_emb[idx]
        self.negative_similarity_ = sims
        self.num_candidates_ = len(cand_words)
        return self

    def _check_fitted(self):
        if not hasattr(self, "negative_emb_"):
            raise NotFittedError("NegLabelScorer is not fitted: call fit() or fit_embeddings().")

    def score_samples(self, img_emb, *, batch_size=None):
        """OOD score ``1 - S(x)`` per image, ``(N,)``; higher = more OOD."""
        self._check_fitted()
        return neglabel_ood_score(img_emb, self.id_emb_, self.negative_emb_, tau=self.tau,
                                  num_groups=self.num_groups, seed=self.seed,
                                  batch_size=batch_size, remainder=self.remainder)

    def id_scores(self, img_emb, *, batch_size=None):
        """NegLabel's S(x) per image (higher = more ID)."""
        self._check_fitted()
        return neglabel_id_score(img_emb, self.id_emb_, self.negative_emb_, tau=self.tau,
                                 num_groups=self.num_groups, seed=self.seed,
                                 batch_size=batch_size, remainder=self.remainder)

    def predict(self, img_emb):
        """``(class names list, confidence (N,))`` of the zero-shot ID classification."""
        self._check_fitted()
        cls, conf = predict_id_class(img_emb, self.id_emb_, tau=self.tau)
        return [self.id_names_[i] for i in cls], conf

    def explain(self, img_emb_row, *, top=5):
        """Top matching ID and negative labels for one image embedding."""
        self._check_fitted()
        return explain(img_emb_row, self.id_emb_, self.id_names_, self.negative_emb_,
                       self.negative_words_, top=top)

    def run_record(self):
        """JSON-serialisable summary to store with a run (params + mined negatives)."""
        self._check_fitted()
        return {
            "method": "neglabel",
            "params": self.get_params(),
            "id_names": list(self.id_names_),
            "num_candidates": self.num_candidates_,
            "negative_words": list(self.negative_words_),
            "negative_pos": list(self.negative_pos_),
            "negative_similarity": [float(v) for v in self.negative_similarity_],
            "excluded_words": list(self.excluded_words_),
            "id_name_candidates": list(self.id_name_candidates_),
            "num_mined": self.num_mined_,
            "dropped_words": list(self.dropped_words_),
            "num_negatives": len(self.negative_words_),
            "score_convention": "ood_score = 1 - S(x); higher = more out-of-distribution",
        }
