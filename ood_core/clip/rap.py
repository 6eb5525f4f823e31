"""RAP: Retrieval-Augmented Prompts for few-shot OOD detection with test-time updates.

Han et al., "Retrieval-Augmented Prompt for OOD Detection" (arXiv 2508.10556).

**Train time** (few-shot ID images, e.g. 1 or 4 per class):

1. each ID image is randomly cropped M = 256 times (:func:`random_crops`) and the crops
   are embedded;
2. per image, the crops are ranked by their best cosine similarity to the ID prompts
   (max over ID prompt embeddings); the top L = 32 are "valuable ID" crops, the bottom
   L = 32 "valuable outlier" crops (:func:`select_valuable_crops`);
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

**Test time** (:func:`rap_scores`, ``test_time=True``): the samples are processed in the
given order, in batches. A sample whose current ID score S (NegLabel's grouped S with
the current negatives) satisfies ``u1 <= S <= u2`` is a "valuable OOD" sample: the Q = 4
candidate words most similar to its image embedding that are not yet negatives are
added to the negatives (samples handled in order, so a word is never added twice).

Thresholds: the paper's u1/u2 values are not reproduced here; defaults are u1 = 0.0,
u2 = 0.5, i.e. every sample the current prompts already call *more OOD than ID* (the
negatives outweigh the ID labels on average over groups) contributes words. Raising u1
skips samples that are already confidently OOD; lowering u2 makes it less likely that
an ID image (S is usually close to 1 for ID) adds words describing ID content.

Scores: ``rescore="final"`` (default) scores every sample with the final negative set,
so scores of all samples are comparable and do not depend on their position in the
order; ``rescore="online"`` keeps, for each batch, the score computed right after that
batch's own update (the streaming protocol). Scores follow the package convention:
**ood_score = 1 - S, higher = more OOD**.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import OODInputError
from ..progress import Progress
from ..validation import check_same_dim
from .neglabel import (
    DEFAULT_NUM_GROUPS,
    DEFAULT_TAU,
    check_id_names,
    id_name_mask,
    neglabel_scores,
    unit_rows,
)
from .text_cache import cached_text_embeddings

DEFAULT_NUM_CROPS = 256
DEFAULT_NUM_KEEP = 32
#: Crop area as a fraction of the image area. torchvision's RandomResizedCrop default:
#: small crops (down to 8%) isolate background and parts, which is what produces the
#: "valuable outlier" crops; large ones keep the whole object for the "valuable ID" ones.
DEFAULT_CROP_SCALE = (0.08, 1.0)
DEFAULT_CROP_RATIO = (3 / 4, 4 / 3)
DEFAULT_LAMBDAS = (0.2, -0.2, -1.0)
DEFAULT_ETA = 5.0
DEFAULT_NUM_NEGATIVES = 10000
DEFAULT_WORDS_PER_SAMPLE = 4
DEFAULT_U1 = 0.0
DEFAULT_U2 = 0.5


# ---------------------------------------------------------------------- few-shot set
def select_few_shot(labels, k_per_class, seed=0):
    """Indices of ``k_per_class`` random samples per class (sorted ascending).

    Classes with fewer than ``k_per_class`` samples contribute all of theirs, with a
    warning. ``None`` labels are skipped.
    """
    if int(k_per_class) != k_per_class or k_per_class < 1:
        raise OODInputError(f"k_per_class must be a positive integer; got {k_per_class!r}.")
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


# ---------------------------------------------------------------------- crops
def crop_boxes(width, height, num_crops=DEFAULT_NUM_CROPS, seed=0, *,
               scale=DEFAULT_CROP_SCALE, ratio=DEFAULT_CROP_RATIO):
    """``(num_crops, 4)`` int boxes ``(left, top, right, bottom)`` inside the image.

    RandomResizedCrop's sampling: area fraction uniform in ``scale``, aspect ratio
    log-uniform in ``ratio``; up to 10 tries per crop, then a centred crop of the
    largest box with an in-range aspect ratio.
    """
    if width < 1 or height < 1:
        raise OODInputError(f"image size must be positive; got {width}x{height}.")
    if not (0 < scale[0] <= scale[1] <= 1):
        raise OODInputError(f"scale must satisfy 0 < min <= max <= 1; got {scale!r}.")
    if not (0 < ratio[0] <= ratio[1]):
        raise OODInputError(f"ratio must satisfy 0 < min <= max; got {ratio!r}.")
    if int(num_crops) != num_crops or num_crops < 1:
        raise OODInputError(f"num_crops must be a positive integer; got {num_crops!r}.")
    rng = np.random.default_rng(seed)
    area = width * height
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    boxes = np.empty((int(num_crops), 4), dtype=np.int64)
    for c in range(int(num_crops)):
        for _ in range(10):
            target = area * rng.uniform(scale[0], scale[1])
            aspect = math.exp(rng.uniform(*log_r))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                left = int(rng.integers(0, width - w + 1))
                top = int(rng.integers(0, height - h + 1))
                break
        else:
            in_ratio = width / height
            if in_ratio < ratio[0]:
                w, h = width, int(round(width / ratio[0]))
            elif in_ratio > ratio[1]:
                w, h = int(round(height * ratio[1])), height
            else:
                w, h = width, height
            w, h = max(1, min(w, width)), max(1, min(h, height))
            left, top = (width - w) // 2, (height - h) // 2
        boxes[c] = (left, top, left + w, top + h)
    return boxes


def random_crops(image, num_crops=DEFAULT_NUM_CROPS, seed=0, *,
                 scale=DEFAULT_CROP_SCALE, ratio=DEFAULT_CROP_RATIO):
    """``num_crops`` seeded random crops of a PIL image (see :func:`crop_boxes`).

    Crops are returned at their native size; the CLIP preprocessing resizes them.
    """
    boxes = crop_boxes(image.width, image.height, num_crops, seed, scale=scale, ratio=ratio)
    return [image.crop(tuple(int(v) for v in b)) for b in boxes]


def select_valuable_crops(crop_emb, id_emb, num_keep=DEFAULT_NUM_KEEP):
    """Split one image's crops into the most ID-like and the least ID-like.

    Each crop's ID-likeness is its maximum cosine similarity over the ID prompt
    embeddings. Returns ``(id_idx, outlier_idx)``: the ``num_keep`` highest (most
    similar first) and the ``num_keep`` lowest (least similar first). With fewer than
    ``2 * num_keep`` crops the two sets may overlap.
    """
    crops = unit_rows(crop_emb, "crop embeddings")
    ids = unit_rows(id_emb, "ID prompt embeddings")
    check_same_dim(ids, crops, "ID prompt embeddings", "crop embeddings")
    if int(num_keep) != num_keep or num_keep < 1:
        raise OODInputError(f"num_keep must be a positive integer; got {num_keep!r}.")
    k = min(int(num_keep), crops.shape[0])
    best = (crops @ ids.T).max(axis=1)
    order = np.argsort(-best, kind="stable")
    return order[:k], order[::-1][:k]


class CropStatistics:
    """Running means of the selected ID and outlier crop embeddings over all images.

    ``sim1``/``sim2`` are means of dot products with unit crops, which equal the dot
    product with the mean crop, so only two D-vectors are kept in memory.
    """

    def __init__(self):
        self._id_sum = None
        self._out_sum = None
        self.num_id = 0
        self.num_outlier = 0

    def add(self, crop_emb, id_emb, num_keep=DEFAULT_NUM_KEEP):
        """Select one image's valuable crops and accumulate them; returns the indices."""
        crops = unit_rows(crop_emb, "crop embeddings")
        id_idx, out_idx = select_valuable_crops(crops, id_emb, num_keep)
        if self._id_sum is None:
            self._id_sum = np.zeros(crops.shape[1], dtype=np.float64)
            self._out_sum = np.zeros(crops.shape[1], dtype=np.float64)
        elif crops.shape[1] != self._id_sum.shape[0]:
            raise OODInputError(
                f"crop embeddings have dimension {crops.shape[1]} but earlier ones had "
                f"{self._id_sum.shape[0]}; use one encoder for all images."
            )
        self._id_sum += crops[id_idx].sum(axis=0)
        self._out_sum += crops[out_idx].sum(axis=0)
        self.num_id += id_idx.size
        self.num_outlier += out_idx.size
        return id_idx, out_idx

    @property
    def id_mean(self):
        self._check()
        return (self._id_sum / self.num_id).astype(np.float32)

    @property
    def outlier_mean(self):
        self._check()
        return (self._out_sum / self.num_outlier).astype(np.float32)

    def _check(self):
        if self._id_sum is None:
            raise OODInputError("no crops were added: call add() for each few-shot image.")


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
    if int(num_negatives) != num_negatives or not 1 <= num_negatives <= pool.size:
        raise OODInputError(
            f"num_negatives must be an integer in [1, {pool.size}] (available candidates); "
            f"got {num_negatives!r}."
        )
    order = pool[np.lexsort((pool, -joint[pool]))]
    return order[: int(num_negatives)].astype(np.int64)


# ---------------------------------------------------------------------- test time
def _top_k_by_index(values, k):
    """Indices of the k largest finite values, ties broken by lower index, best first.

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


def rap_scores(img_emb, id_emb, cand_emb, train_negatives, *, test_time=True,
               u1=DEFAULT_U1, u2=DEFAULT_U2, words_per_sample=DEFAULT_WORDS_PER_SAMPLE,
               batch_size=256, rescore="final", exclude=None, tau=DEFAULT_TAU,
               num_groups=DEFAULT_NUM_GROUPS, seed=0, progress=False):
    """Score images with RAP's negatives, optionally updating them at test time.

    Args:
        img_emb: ``(N, D)`` image embeddings, processed in this order.
        id_emb: ``(K, D)`` ID prompt embeddings.
        cand_emb: ``(C, D)`` candidate word embeddings (the retrieval pool).
        train_negatives: candidate indices chosen at train time
            (:func:`mine_train_negatives`).
        test_time: False = train-time negatives only (plain grouped NegLabel score).
        u1, u2: a sample with ``u1 <= S <= u2`` adds ``words_per_sample`` words.
        batch_size: samples per test-time update step.
        rescore: ``"final"`` or ``"online"`` (see the module docstring).
        exclude: candidate indices that must never become negatives (ID class names).
        tau, num_groups, seed: NegLabel's grouped score parameters.
        progress: the package convention (:mod:`ood_core.progress`; default silent),
            counting processed samples.
    """
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
            f"train_negatives must be distinct indices in [0, {cand.shape[0]}) of the "
            "candidate embeddings."
        )
    if not 0.0 <= u1 <= u2 <= 1.0:
        raise OODInputError(f"need 0 <= u1 <= u2 <= 1 (ID-score range); got u1={u1}, u2={u2}.")
    if int(words_per_sample) != words_per_sample or words_per_sample < 1:
        raise OODInputError(f"words_per_sample must be a positive integer; got {words_per_sample!r}.")
    if int(batch_size) != batch_size or batch_size < 1:
        raise OODInputError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if rescore not in ("final", "online"):
        raise OODInputError(f"rescore must be 'final' or 'online'; got {rescore!r}.")

    def score(x, neg_idx):
        return neglabel_scores(x, ids, cand[neg_idx], tau=tau, num_groups=num_groups, seed=seed)

    if not test_time:
        id_s, ood_s = score(img, train)
        empty = np.zeros(0, dtype=np.int64)
        return RAPResult(ood_s, id_s, train.copy(), empty, empty.copy())

    used = np.zeros(cand.shape[0], dtype=bool)
    used[train] = True
    if exclude is not None:
        used[np.asarray(list(exclude), dtype=np.int64)] = True
    negatives = list(train.tolist())
    added, sources = [], []
    id_scores = np.empty(img.shape[0])
    ood_scores = np.empty(img.shape[0])
    q = int(words_per_sample)
    n = img.shape[0]
    bar = Progress(progress, n, "RAP test-time scoring")
    for start in range(0, n, int(batch_size)):
        x = img[start : start + int(batch_size)]
        id_s, _ = score(x, np.asarray(negatives))
        valuable = np.flatnonzero((id_s >= u1) & (id_s <= u2))
        if valuable.size:
            sims = x[valuable] @ cand.T
            for row, local in zip(sims, valuable):
                row = np.where(used, -np.inf, row)
                k = min(q, int(np.isfinite(row).sum()))
                if k == 0:
                    break  # candidate pool exhausted
                top = _top_k_by_index(row, k)
                used[top] = True
                negatives.extend(top.tolist())
                added.extend(top.tolist())
                sources.extend([start + int(local)] * k)
        if rescore == "online":
            sl = slice(start, start + x.shape[0])
            id_scores[sl], ood_scores[sl] = score(x, np.asarray(negatives))
        bar.update(x.shape[0])
    bar.close()
    if rescore == "final":
        id_scores, ood_scores = score(img, np.asarray(negatives))
    return RAPResult(
        ood_scores,
        id_scores,
        train.copy(),
        np.asarray(added, dtype=np.int64),
        np.asarray(sources, dtype=np.int64),
    )


# ---------------------------------------------------------------------- estimator
class RAPScorer:
    """RAP end to end with a :class:`~ood_core.clip.encoder.CLIPEncoder`.

    ``fit(id_names, few_shot_images, encoder, lexicon)`` crops and embeds the few-shot
    images, computes the joint similarity over the (cached) candidate embeddings and
    keeps the top ``num_negatives`` words. ``score_samples(img_emb)`` runs the test-time
    procedure and returns a :class:`RAPResult` (indices refer to ``candidate_words_``).

    Cost note: M crops per few-shot image are encoded (256 x 1,000 images for ImageNet
    1-shot = 256k image forward passes); lower ``num_crops`` on CPU.
    """

    def __init__(self, *, num_crops=DEFAULT_NUM_CROPS, num_keep=DEFAULT_NUM_KEEP,
                 crop_scale=DEFAULT_CROP_SCALE, lambdas=DEFAULT_LAMBDAS, eta=DEFAULT_ETA,
                 num_negatives=DEFAULT_NUM_NEGATIVES, test_time=True, u1=DEFAULT_U1,
                 u2=DEFAULT_U2, words_per_sample=DEFAULT_WORDS_PER_SAMPLE,
                 batch_size=256, rescore="final", tau=DEFAULT_TAU,
                 num_groups=DEFAULT_NUM_GROUPS, seed=0, id_template=None, templates=None):
        from .neglabel import DEFAULT_TEMPLATES, ID_TEMPLATE

        self.num_crops = num_crops
        self.num_keep = num_keep
        self.crop_scale = tuple(crop_scale)
        self.lambdas = tuple(lambdas)
        self.eta = eta
        self.num_negatives = num_negatives
        self.test_time = test_time
        self.u1 = u1
        self.u2 = u2
        self.words_per_sample = words_per_sample
        self.batch_size = batch_size
        self.rescore = rescore
        self.tau = tau
        self.num_groups = num_groups
        self.seed = seed
        self.id_template = id_template or ID_TEMPLATE
        self.templates = dict(templates or DEFAULT_TEMPLATES)

    def get_params(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()
                if not k.endswith("_")}

    def fit(self, id_names, few_shot_images, encoder, lexicon, *, cache_dir=None,
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
            progress: the package convention (:mod:`ood_core.progress`); counts crops,
                then candidate prompts on a text-cache miss.
        """
        id_names = check_id_names(id_names)
        images = list(few_shot_images)
        if not images:
            raise OODInputError("few_shot_images is empty: RAP needs at least one ID image.")
        id_emb = encoder.encode_texts([self.id_template.format(n) for n in id_names],
                                      batch_size=text_batch_size)
        stats = self.crop_statistics(images, encoder, id_emb, progress=progress,
                                     image_loader=image_loader, batch_size=image_batch_size)
        cand_emb = cached_text_embeddings(
            encoder, lexicon.words, lexicon.pos, self.templates, cache_dir=cache_dir,
            progress=progress, batch_size=text_batch_size)
        return self.fit_embeddings(id_names, id_emb, stats, lexicon.words, lexicon.pos, cand_emb)

    def crop_statistics(self, images, encoder, id_emb, *, progress=None, image_loader=None,
                        batch_size=64):
        """Crop, embed and select the valuable crops of each few-shot image: a :class:`CropStatistics`."""
        load = image_loader or _load_image
        stats = CropStatistics()
        with Progress(progress, len(images) * int(self.num_crops), "RAP few-shot crops") as bar:
            for i, item in enumerate(images):
                crops = random_crops(load(item), self.num_crops, seed=self.seed + i,
                                     scale=self.crop_scale)
                stats.add(encoder.encode_images(crops, batch_size=batch_size), id_emb, self.num_keep)
                bar.update(len(crops))
        return stats

    def fit_embeddings(self, id_names, id_emb, crop_stats, cand_words, cand_pos, cand_emb):
        """Mine train-time negatives from precomputed embeddings and crop statistics.

        Candidates equal to an ID class name (case-insensitive) are dropped by index
        first: they are listed in ``excluded_words_`` and never become negatives.
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
            u1=self.u1, u2=self.u2, words_per_sample=self.words_per_sample,
            batch_size=self.batch_size, rescore=self.rescore,
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
            from ..errors import NotFittedError

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
            "score_convention": "ood_score = 1 - S(x); higher = more out-of-distribution",
        }


def _load_image(item):
    from PIL import Image

    from ..images import load_rgb

    return item if isinstance(item, Image.Image) else load_rgb(item)  # upright (EXIF), RGB
