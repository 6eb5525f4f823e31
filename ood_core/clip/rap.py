"""RAP: Retrieval-Augmented Prompts for few-shot OOD detection with test-time updates.

Han et al., "Retrieval-Augmented Prompt for OOD Detection" (arXiv 2508.10556).

**Train time** (few-shot ID images, e.g. 1 or 4 per class):

1. each ID image is randomly cropped M = 256 times, each crop mirrored with probability
   1/2 (:func:`~ood_core.clip.rap_crops.random_crops`), and the crops are embedded;
2. per image, the crops are ranked by their cosine similarity to the image's **own class
   prompt** (``crop_ranking="own_class"``, as the method RAP builds on; ``"all_prompts"``
   ranks by the best ID prompt instead); the top L = 32 are "valuable ID" crops, the
   bottom L = 32 "valuable outlier" crops (:mod:`ood_core.clip.rap_crops`);
3. every candidate word embedding h gets the joint similarity (:func:`joint_similarity`)::

       J(h) = l1 * sim1 + l2 * sim2 + l3 * sim3
       sim1 = mean cos(h, outlier crops)      sim2 = mean cos(h, ID crops)
       sim3 = the similarity to the ID prompts exceeded by only eta% of them
              (eta = 5: the 95th percentile, NegLabel's mining statistic)

   with l1 > 0, l2 < 0, l3 < 0 (paper: 0.2, -0.2, -1 on ImageNet-1k); the top P = 10,000
   words become the train-time negatives (:func:`mine_train_negatives`).

   ``eta`` reading: the method description gives eta = 5 and calls sim3 "NegLabel-style".
   NegLabel's distance is the eta = 5% percentile of the *negated* similarities, i.e.
   the 95th percentile of the similarities; with l3 < 0 that penalises words close to
   *some* ID class, which is the intent. So ``eta=5`` here means ``percentile(cos,
   100 - eta)``.

**Test time**: :mod:`ood_core.clip.rap_stream` (Algorithm 2: streaming order, update
from a batch then score it; top-Q retrieval united with the negatives; u1/u2 presets
from the paper's Table 1).

Defaults follow the paper; the options keep the older readings: ``rescore="final"``,
``retrieval="new_only"``, ``crop_ranking="all_prompts"``, ``flip=False``.
"""

import warnings

import numpy as np

from ..errors import NotFittedError, OODInputError
from ..progress import Progress
from ..validation import check_flag, check_number, check_positive_int, check_same_dim, is_int
from .neglabel import (
    DEFAULT_NUM_GROUPS,
    DEFAULT_TAU,
    check_id_names,
    id_name_mask,
    plain_params,
    unit_rows,
)
from .rap_crops import (
    CROP_RANKINGS,
    DEFAULT_CROP_SCALE,
    DEFAULT_NUM_CROPS,
    DEFAULT_NUM_KEEP,
    CropStatistics,
    random_crops,
)
from .rap_stream import (
    DEFAULT_U_PRESET,
    DEFAULT_WORDS_PER_SAMPLE,
    RESCORE_MODES,
    RETRIEVAL_MODES,
    rap_scores,
    resolve_u,
)
from .text_cache import cached_text_embeddings

DEFAULT_LAMBDAS = (0.2, -0.2, -1.0)
DEFAULT_ETA = 5.0
DEFAULT_NUM_NEGATIVES = 10000


def _check_seed(seed):
    if not is_int(seed) or seed < 0:
        raise OODInputError(f"seed={seed!r} is not valid; pass a whole number >= 0.")


def _check_numbers(num_negatives, crop_scale, eta, seed, lambdas):
    """RAPScorer's settings of the wrong type, refused before any image is read (they failed deep inside)."""
    check_positive_int(num_negatives, "num_negatives")
    scale = crop_scale if isinstance(crop_scale, (list, tuple, np.ndarray)) else None
    if scale is None or len(scale) != 2 or not all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in scale) \
            or not 0 < scale[0] <= scale[1] <= 1:
        raise OODInputError(f"crop_scale={crop_scale!r} is not valid; pass two numbers (min, max) with "
                            "0 < min <= max <= 1: the share of the image a crop covers, e.g. (0.08, 1.0)")
    check_number(eta, "eta", low=0, high=100, hint=" (a percentage; the paper's 5)")
    _check_seed(seed)
    if not isinstance(lambdas, (list, tuple, np.ndarray)):
        raise OODInputError(f"lambdas={lambdas!r} must be three finite numbers (lambda1 > 0 for outlier crops, "
                            "lambda2 < 0 for ID crops, lambda3 < 0 for ID prompts), e.g. (0.2, -0.2, -1.0)")


# ---------------------------------------------------------------------- few-shot set
def select_few_shot(labels, k_per_class, seed=0):
    """Indices of ``k_per_class`` random samples per class (sorted ascending).

    Classes with fewer than ``k_per_class`` samples contribute all of theirs, with a
    warning. ``None`` labels are skipped.
    """
    if not is_int(k_per_class) or k_per_class < 1:
        raise OODInputError(f"k_per_class must be a positive integer; got {k_per_class!r}.")
    _check_seed(seed)
    labels = list(labels)
    if not labels:
        raise OODInputError("labels is empty: the few-shot ID set needs labelled samples.")
    rng = np.random.default_rng(seed)
    by_class = {}
    for i, y in enumerate(labels):
        if y is not None:
            by_class.setdefault(y, []).append(i)
    if not by_class:
        raise OODInputError("every label is None: the few-shot ID set needs labelled samples.")
    chosen, short = [], []
    for y in sorted(by_class, key=str):
        idx = np.asarray(by_class[y])
        if idx.size < k_per_class:
            short.append(y)
            chosen.extend(idx.tolist())
        else:
            chosen.extend(rng.choice(idx, size=int(k_per_class), replace=False).tolist())
    if short:
        warnings.warn(
            f"{len(short)} class(es) have fewer than {k_per_class} samples and contribute "
            f"all they have: {short[:10]}"
        )
    return np.array(sorted(chosen), dtype=np.int64)


# ---------------------------------------------------------------------- train-time words
def joint_similarity(cand_emb, id_crop_mean, outlier_crop_mean, id_emb, *,
                     lambdas=DEFAULT_LAMBDAS, eta=DEFAULT_ETA):
    """RAP's joint similarity of each candidate word, ``(C,)`` float32.

    ``id_crop_mean``/``outlier_crop_mean``: mean unit embedding of the valuable ID /
    outlier crops (``CropStatistics``), or ``(L, D)`` arrays of the crops themselves
    (averaged here). ``eta``: see the module docstring (``percentile(cos, 100 - eta)``).
    """
    l1, l2, l3 = lambdas
    cand = unit_rows(cand_emb, "candidate embeddings")
    ids = unit_rows(id_emb, "ID prompt embeddings")
    check_same_dim(ids, cand, "ID prompt embeddings", "candidate embeddings")
    if not 0 <= eta <= 100:
        raise OODInputError(f"eta must be a percentage in [0, 100]; got {eta!r}.")

    def mean_vec(m, name):
        m = np.asarray(m, dtype=np.float32)
        if m.ndim == 2:
            m = unit_rows(m, name).mean(axis=0)
        if m.ndim != 1 or m.shape[0] != cand.shape[1]:
            raise OODInputError(
                f"{name} must be a ({cand.shape[1]},) mean vector or an (L, "
                f"{cand.shape[1]}) array; got shape {np.shape(m)}."
            )
        return m

    sim1 = cand @ mean_vec(outlier_crop_mean, "outlier crop embeddings")
    sim2 = cand @ mean_vec(id_crop_mean, "ID crop embeddings")
    from .neglabel import candidate_id_similarity

    sim3 = candidate_id_similarity(ids, cand, percentile=100.0 - eta)
    return (l1 * sim1 + l2 * sim2 + l3 * sim3).astype(np.float32)


def mine_train_negatives(joint, num_negatives=DEFAULT_NUM_NEGATIVES, *, exclude=None):
    """Indices of the ``num_negatives`` candidates with the highest joint similarity.

    Ordered from highest to lowest (ties by index); ``exclude`` = candidate indices
    never to select (e.g. words equal to ID class names).
    """
    joint = np.asarray(joint, dtype=np.float64)
    if joint.ndim != 1 or joint.size == 0:
        raise OODInputError(f"joint similarity must be a non-empty 1-D array; got {joint.shape}.")
    allowed = np.ones(joint.size, dtype=bool)
    if exclude is not None:
        allowed[np.asarray(list(exclude), dtype=np.int64)] = False
    pool = np.flatnonzero(allowed)
    if not is_int(num_negatives) or not 1 <= num_negatives <= pool.size:
        raise OODInputError(
            f"num_negatives must be an integer in [1, {pool.size}] (available candidates); "
            f"got {num_negatives!r}."
        )
    order = pool[np.lexsort((pool, -joint[pool]))]
    return order[: int(num_negatives)].astype(np.int64)


# ---------------------------------------------------------------------- estimator
class RAPScorer:
    """RAP end to end with a :class:`~ood_core.clip.encoder.CLIPEncoder`.

    ``fit(id_names, few_shot_images, encoder, lexicon, few_shot_labels=...)`` crops and
    embeds the few-shot images, computes the joint similarity over the (cached, whole)
    candidate vocabulary and keeps the top ``num_negatives`` words.
    ``score_samples(img_emb)`` runs the test-time procedure and returns a
    :class:`~ood_core.clip.rap_stream.RAPResult` (indices refer to ``candidate_words_``).

    Paper defaults: crops ranked by their own class prompt and mirrored with probability
    1/2; streaming scores (``rescore="online"``); top-Q retrieval united with the
    negatives (``retrieval="union"``); u1/u2 from ``u_preset`` (explicit ``u1``/``u2``
    override it). Cost note: ``num_crops`` forward passes per few-shot image (256 x 1,000
    images for ImageNet 1-shot); lower it on CPU.
    """

    def __init__(self, *, num_crops=DEFAULT_NUM_CROPS, num_keep=DEFAULT_NUM_KEEP,
                 crop_scale=DEFAULT_CROP_SCALE, crop_ranking="own_class", flip=True,
                 lambdas=DEFAULT_LAMBDAS, eta=DEFAULT_ETA, num_negatives=DEFAULT_NUM_NEGATIVES,
                 test_time=True, u_preset=DEFAULT_U_PRESET, u1=None, u2=None,
                 words_per_sample=DEFAULT_WORDS_PER_SAMPLE, batch_size=256, rescore="online",
                 retrieval="union", tau=DEFAULT_TAU, num_groups=DEFAULT_NUM_GROUPS, seed=0,
                 id_template=None, templates=None):
        from .neglabel import DEFAULT_TEMPLATES, ID_TEMPLATE

        for name, value, allowed in (("crop_ranking", crop_ranking, CROP_RANKINGS),
                                     ("rescore", rescore, RESCORE_MODES),
                                     ("retrieval", retrieval, RETRIEVAL_MODES)):
            if value not in allowed:
                raise OODInputError(f"{name} must be one of {allowed} (the first is the paper's); got {value!r}.")
        resolve_u(u_preset, u1, u2)  # fail early on a bad preset or range
        for name, value in (("flip", flip), ("test_time", test_time)):
            check_flag(value, name)
        _check_numbers(num_negatives, crop_scale, eta, seed, lambdas)
        lambdas = tuple(lambdas)
        numbers = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                      and np.isfinite(v) for v in lambdas)
        if len(lambdas) != 3 or not numbers:
            raise OODInputError(f"lambdas={lambdas!r} must be three finite numbers (lambda1 > 0 for outlier crops, "
                                "lambda2 < 0 for ID crops, lambda3 < 0 for ID prompts), e.g. (0.2, -0.2, -1.0)")
        if is_int(num_crops) and is_int(num_keep) and num_keep > num_crops:
            raise OODInputError(f"num_keep={num_keep} is larger than num_crops={num_crops}: a few-shot image keeps "
                                "some of its own crops; lower num_keep or raise num_crops")
        self.num_crops = num_crops
        self.num_keep = num_keep
        self.crop_scale = tuple(crop_scale)
        self.crop_ranking = crop_ranking
        self.flip = bool(flip)
        self.lambdas = tuple(lambdas)
        self.eta = eta
        self.num_negatives = num_negatives
        self.test_time = test_time
        self.u_preset = u_preset
        self.u1 = u1
        self.u2 = u2
        self.words_per_sample = words_per_sample
        self.batch_size = batch_size
        self.rescore = rescore
        self.retrieval = retrieval
        self.tau = tau
        self.num_groups = num_groups
        self.seed = seed
        self.id_template = id_template or ID_TEMPLATE
        self.templates = dict(templates or DEFAULT_TEMPLATES)

    def get_params(self):
        return plain_params({k: v for k, v in vars(self).items() if not k.endswith("_")})

    @property
    def thresholds(self):
        """The ``(u1, u2)`` in use: the preset's, overridden by explicit values."""
        return resolve_u(self.u_preset, self.u1, self.u2)

    def fit(self, id_names, few_shot_images, encoder, lexicon, *, few_shot_labels=None, cache_dir=None,
            progress=None, image_loader=None, image_batch_size=64, text_batch_size=256):
        """Mine train-time negatives from few-shot ID images; returns self.

        Args:
            id_names: the ID class names.
            few_shot_images: PIL images, or anything ``image_loader`` turns into one
                (default: file paths, read by :func:`ood_core.images.load_rgb`). The
                i-th image is cropped with seed ``seed + i``.
            encoder: a :class:`~ood_core.clip.encoder.CLIPEncoder` (or any object with
                ``encode_images`` / ``encode_texts``, ``model_name``, ``weights_identity``).
            lexicon: the candidate vocabulary; it is embedded **whole** (text-cache key
                independent of the ID classes) and ID class names are dropped by index.
            few_shot_labels: the ID class name of each image (needed by
                ``crop_ranking="own_class"``).
            progress: the package convention (:mod:`ood_core.progress`); counts crops,
                then candidate prompts on a text-cache miss.
        """
        id_names = check_id_names(id_names)
        images = list(few_shot_images)
        if not images:
            raise OODInputError("few_shot_images is empty: RAP needs at least one ID image.")
        classes = self.class_indices(id_names, few_shot_labels, len(images))
        id_emb = encoder.encode_texts([self.id_template.format(n) for n in id_names],
                                      batch_size=text_batch_size)
        stats = self.crop_statistics(images, encoder, id_emb, class_indices=classes, progress=progress,
                                     image_loader=image_loader, batch_size=image_batch_size)
        cand_emb = cached_text_embeddings(
            encoder, lexicon.words, lexicon.pos, self.templates, cache_dir=cache_dir,
            progress=progress, batch_size=text_batch_size)
        return self.fit_embeddings(id_names, id_emb, stats, lexicon.words, lexicon.pos, cand_emb)

    def class_indices(self, id_names, labels, num_images):
        """Each few-shot image's ID class index (``None`` each for ``"all_prompts"``); checks the labels."""
        from .lexicon import normalize_word

        if self.crop_ranking == "all_prompts":
            return [None] * num_images
        if labels is None:
            raise OODInputError(
                "crop_ranking='own_class' ranks each few-shot image's crops by its own class prompt, so it "
                "needs the class of every few-shot image: pass few_shot_labels (FiftyOne: a Classification "
                "label_field), or crop_ranking='all_prompts' to rank by the best ID prompt instead.")
        labels = list(labels)
        index = {normalize_word(n): i for i, n in enumerate(id_names)}
        unknown = sorted({str(y) for y in labels if y is None or normalize_word(y) not in index})
        if len(labels) != num_images or unknown:
            raise OODInputError(
                f"few_shot_labels must give one ID class name per few-shot image ({num_images}); got "
                f"{len(labels)} labels, not ID classes: {unknown[:10]}. Label the few-shot images with ID "
                "classes, or pass crop_ranking='all_prompts'.")
        return [index[normalize_word(y)] for y in labels]

    def crop_statistics(self, images, encoder, id_emb, *, class_indices=None, progress=None,
                        image_loader=None, batch_size=64):
        """Crop, embed and select the valuable crops of each few-shot image: a :class:`CropStatistics`."""
        load = image_loader or _load_image
        classes = class_indices or [None] * len(images)
        stats = CropStatistics()
        with Progress(progress, len(images) * int(self.num_crops), "RAP few-shot crops") as bar:
            for i, item in enumerate(images):
                crops = random_crops(load(item), self.num_crops, seed=self.seed + i,
                                     scale=self.crop_scale, flip=self.flip)
                stats.add(encoder.encode_images(crops, batch_size=batch_size), id_emb, self.num_keep,
                          class_index=classes[i])
                bar.update(len(crops))
        return stats

    def fit_embeddings(self, id_names, id_emb, crop_stats, cand_words, cand_pos, cand_emb):
        """Mine train-time negatives from precomputed embeddings and crop statistics.

        Candidates that name an ID class (case-insensitive, alternatives and singulars:
        :func:`~ood_core.clip.lexicon.id_name_keys`) are dropped by index first: they are
        listed in ``excluded_words_`` and never become negatives.
        """
        id_names = check_id_names(id_names)
        self.id_names_ = list(id_names)
        self.id_emb_ = unit_rows(id_emb, "ID prompt embeddings")
        cand_words, cand_pos = list(cand_words), list(cand_pos)
        cand_emb = unit_rows(cand_emb, "candidate embeddings")
        if not (len(cand_words) == len(cand_pos) == cand_emb.shape[0]):
            raise OODInputError(
                f"candidates: {len(cand_words)} words, {len(cand_pos)} POS tags and "
                f"{cand_emb.shape[0]} embeddings; all three must have the same length.")
        keep = id_name_mask(cand_words, id_names, keep=False)
        if not keep.any():
            raise OODInputError("no candidate words remain after removing the ID class names.")
        self.excluded_words_ = [w for w, k in zip(cand_words, keep) if not k]
        self.candidate_words_ = [w for w, k in zip(cand_words, keep) if k]
        self.candidate_pos_ = [p for p, k in zip(cand_pos, keep) if k]
        self.candidate_emb_ = cand_emb[keep]
        joint = joint_similarity(self.candidate_emb_, crop_stats.id_mean,
                                 crop_stats.outlier_mean, self.id_emb_,
                                 lambdas=self.lambdas, eta=self.eta)
        p = min(int(self.num_negatives), self.candidate_emb_.shape[0])
        self.train_negatives_ = mine_train_negatives(joint, p)
        return self

    def score_samples(self, img_emb, *, test_time=None, progress=False):
        """Run RAP on image embeddings (in the given order); returns a :class:`RAPResult`."""
        self._check_fitted()
        return rap_scores(
            img_emb, self.id_emb_, self.candidate_emb_, self.train_negatives_,
            test_time=self.test_time if test_time is None else test_time,
            u1=self.u1, u2=self.u2, u_preset=self.u_preset, words_per_sample=self.words_per_sample,
            batch_size=self.batch_size, rescore=self.rescore, retrieval=self.retrieval,
            tau=self.tau, num_groups=self.num_groups, seed=self.seed, progress=progress,
        )

    def predict(self, img_emb):
        """``(class names list, confidence (N,))`` of the zero-shot ID classification."""
        from .neglabel import predict_id_class

        self._check_fitted()
        cls, conf = predict_id_class(img_emb, self.id_emb_, tau=self.tau)
        return [self.id_names_[i] for i in cls], conf

    def _check_fitted(self):
        if not hasattr(self, "train_negatives_"):
            raise NotFittedError("RAPScorer is not fitted: call fit() or fit_embeddings().")

    def run_record(self, result):
        """JSON-serialisable summary of a fit + :class:`RAPResult` for a run record.

        ``test_negative_sources`` are row indices of the scored embeddings.
        """
        words, pos = self.candidate_words_, self.candidate_pos_
        return {
            "method": "rap",
            "params": self.get_params(),
            "id_names": list(self.id_names_),
            "num_candidates": len(words),
            "excluded_words": list(self.excluded_words_),
            "train_negative_words": [words[i] for i in result.train_negatives],
            "train_negative_pos": [pos[i] for i in result.train_negatives],
            "test_negative_words": [words[i] for i in result.test_negatives],
            "test_negative_pos": [pos[i] for i in result.test_negatives],
            "test_negative_sources": result.test_negative_sources.tolist(),
            "thresholds": plain_params(self.thresholds),
            "score_convention": "ood_score = 1 - S(x); higher = more out-of-distribution",
        }


def _load_image(item):
    from PIL import Image

    from ..images import load_rgb

    return item if isinstance(item, Image.Image) else load_rgb(item)  # upright (EXIF), RGB
