"""RAP's few-shot crops: random resized crops (with flips), ranking, running statistics.

Train-time steps 1-2 of :mod:`ood_core.clip.rap`: each few-shot ID image is cropped
``num_crops`` times; per image the ``num_keep`` crops most similar to the image's own
class prompt are "valuable ID" crops and the ``num_keep`` least similar "valuable
outlier" crops; only their running means are kept (:class:`CropStatistics`).
"""

import math

import numpy as np

from ..errors import OODInputError
from ..validation import check_same_dim, is_int
from .neglabel import unit_rows

DEFAULT_NUM_CROPS = 256
DEFAULT_NUM_KEEP = 32
#: Crop area as a fraction of the image area. torchvision's RandomResizedCrop default:
#: small crops (down to 8%) isolate background and parts, which is what produces the
#: "valuable outlier" crops; large ones keep the whole object for the "valuable ID" ones.
DEFAULT_CROP_SCALE = (0.08, 1.0)
DEFAULT_CROP_RATIO = (3 / 4, 4 / 3)
#: how crops are ranked: by the image's own class prompt (paper), or by the best ID prompt
CROP_RANKINGS = ("own_class", "all_prompts")


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
    if not is_int(num_crops) or num_crops < 1:
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


def crop_flips(num_crops, seed=0):
    """``(num_crops,)`` bool: which crops are mirrored (probability 1/2, seeded).

    Drawn from their own stream (``default_rng([seed, 1])``), so the crop boxes of a
    seed are the same with and without flips.
    """
    return np.random.default_rng([int(seed), 1]).random(int(num_crops)) < 0.5


def random_crops(image, num_crops=DEFAULT_NUM_CROPS, seed=0, *,
                 scale=DEFAULT_CROP_SCALE, ratio=DEFAULT_CROP_RATIO, flip=False):
    """``num_crops`` seeded random crops of a PIL image (see :func:`crop_boxes`).

    ``flip``: mirror each crop horizontally with probability 1/2 (:func:`crop_flips`),
    the usual RandomResizedCrop + RandomHorizontalFlip augmentation. Crops are returned
    at their native size; the CLIP preprocessing resizes them.
    """
    from PIL import Image

    boxes = crop_boxes(image.width, image.height, num_crops, seed, scale=scale, ratio=ratio)
    crops = [image.crop(tuple(int(v) for v in b)) for b in boxes]
    if flip:
        mirror = crop_flips(len(crops), seed)
        crops = [c.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if m else c for c, m in zip(crops, mirror)]
    return crops


def select_valuable_crops(crop_emb, id_emb, num_keep=DEFAULT_NUM_KEEP, class_index=None):
    """Split one image's crops into the most ID-like and the least ID-like.

    A crop's ID-likeness is its cosine similarity to the image's **own class prompt**
    ``id_emb[class_index]`` (the ranking of the method RAP builds on), or, with
    ``class_index=None``, its maximum over all ID prompts. Returns ``(id_idx,
    outlier_idx)``: the ``num_keep`` highest (most similar first) and the ``num_keep``
    lowest (least similar first). With fewer than ``2 * num_keep`` crops the two sets
    may overlap.
    """
    crops = unit_rows(crop_emb, "crop embeddings")
    ids = unit_rows(id_emb, "ID prompt embeddings")
    check_same_dim(ids, crops, "ID prompt embeddings", "crop embeddings")
    if not is_int(num_keep) or num_keep < 1:
        raise OODInputError(f"num_keep must be a positive integer; got {num_keep!r}.")
    k = min(int(num_keep), crops.shape[0])
    if class_index is None:
        likeness = (crops @ ids.T).max(axis=1)
    else:
        if not 0 <= int(class_index) < ids.shape[0]:
            raise OODInputError(f"class_index {class_index!r} is not one of the {ids.shape[0]} ID prompts.")
        likeness = crops @ ids[int(class_index)]
    order = np.argsort(-likeness, kind="stable")
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

    def add(self, crop_emb, id_emb, num_keep=DEFAULT_NUM_KEEP, class_index=None):
        """Select one image's valuable crops and accumulate them; returns the indices.

        ``class_index``: the image's ID class (rank crops by its prompt), or ``None``
        (rank by the best ID prompt); see :func:`select_valuable_crops`.
        """
        crops = unit_rows(crop_emb, "crop embeddings")
        id_idx, out_idx = select_valuable_crops(crops, id_emb, num_keep, class_index)
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
