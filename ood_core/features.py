"""Feature-pyramid embeddings from a timm backbone (Wulz & Krispel).

A backbone is created with timm's ``features_only=True`` and the chosen
``out_indices``; one forward pass yields every chosen level. Two ways to turn
the levels into one vector per image:

- ``mode="flatten"`` (the paper): resize every level's map to the spatial
  size of the deepest chosen level (area averaging, i.e. adaptive average
  pooling, since that level is the smallest), concatenate along channels and
  flatten. Exact to the paper, but large: ``sum(C_l) * h * w`` floats.
- ``mode="pool"`` (bounded): average-pool every level to a ``grid x grid``
  map (1 = global average pooling), flatten each and concatenate. Dimension
  ``sum(C_l) * grid**2`` regardless of input resolution.

Inputs are preprocessed with the backbone's own data config
(``timm.data.resolve_data_config``), in eval mode under ``torch.inference_mode``.
"""

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import OODInputError
from .images import (
    ImageLoadError, bounded_transform, crop_box, decode_size, decoding_record, empty_box_problem, load_rgb,
    subpixel_box_problem,
)
from .progress import Progress

logger = logging.getLogger(__name__)

MODES = ("flatten", "pool")
# Names the paper uses for ResNet's stem level; timm calls that level "act1".
_STEM_ALIASES = ("conv1", "stem")


def resolve_levels(module_names, levels):
    """Map ``levels`` (indices and/or module names) to sorted unique indices.

    ``module_names`` is ``feature_info.module_name()`` of the backbone. Names
    may be exact module names (``"layer1"``, ``"blocks.2"``) or ``"conv1"`` /
    ``"stem"`` for level 0. Negative indices count from the end.
    """
    n = len(module_names)
    if levels is None:
        return list(range(n))
    if isinstance(levels, (int, np.integer, str)) or not hasattr(levels, "__iter__"):
        levels = [levels]  # one level (a float or other scalar is refused below, naming it)
    out = []
    for level in levels:
        if isinstance(level, (int, np.integer)) and not isinstance(level, bool):
            idx = int(level) + (n if level < 0 else 0)
            if not 0 <= idx < n:
                raise OODInputError(
                    f"pyramid level index {level} is out of range: this backbone has {n} levels {module_names}")
        elif isinstance(level, str) and level in module_names:
            idx = module_names.index(level)
        elif isinstance(level, str) and level in _STEM_ALIASES:
            idx = 0
        else:
            raise OODInputError(
                f"unknown pyramid level {level!r}; use an index 0..{n - 1} or one of {module_names}"
            )
        out.append(idx)
    if not out:
        raise OODInputError("levels is empty; choose at least one pyramid level")
    return sorted(set(out))


def combine_levels(feature_maps, mode, grid=1):
    """Combine a list of ``(B, C_l, H_l, W_l)`` tensors into ``(B, D)`` embeddings."""
    import torch
    import torch.nn.functional as F

    if mode == "pool":
        parts = [F.adaptive_avg_pool2d(f, grid).flatten(1) for f in feature_maps]
    elif mode == "flatten":
        # The deepest chosen level has the smallest map; bring the others down to it.
        h = min(f.shape[-2] for f in feature_maps)
        w = min(f.shape[-1] for f in feature_maps)
        parts = [F.adaptive_avg_pool2d(f, (h, w)) for f in feature_maps]
        return torch.cat(parts, dim=1).flatten(1)
    else:
        raise OODInputError(f"unknown pyramid mode {mode!r}; use one of {MODES}")
    return torch.cat(parts, dim=1)


@dataclass
class ExtractionResult:
    """Embeddings of the items that loaded, plus what failed and why.

    ``embeddings[i]`` belongs to ``items[ok_indices[i]]``.
    """

    embeddings: np.ndarray
    ok_indices: np.ndarray
    failures: list = field(default_factory=list)  # [(item index, message)]


class _ItemDataset:
    """torch-style dataset over image paths or ``(path, relative_box)`` pairs."""

    def __init__(self, items, transform, min_side):
        self.items = items
        self.transform = transform
        # whole images are decoded keeping ``min_side`` (a large JPEG at 1/2-1/8 scale); an object's box is cut
        # from the full-size image, whose pixels the crop needs
        self.min_side = min_side
        self._last = (None, None)  # consecutive patches usually share an image

    def __len__(self):
        return len(self.items)

    def _image(self, path, boxed):
        key = (path, boxed)
        if self._last[0] != key:
            self._last = (key, load_rgb(path, None if boxed else self.min_side))
        return self._last[1]

    def __getitem__(self, i):
        """``(i, tensor, None)``, or ``(i, None, message)`` for an item that cannot be read; the message leaves
        out the advice to skip it (:attr:`.ImageLoadError.skipped_message`): skipped, it is recorded as is."""
        item = self.items[i]
        boxed = isinstance(item, (tuple, list))  # else a path (str or os.PathLike)
        path, box = item if boxed else (item, None)
        try:
            problem = empty_box_problem(box) if boxed else None
            if problem is not None:  # grown to one pixel, its flat colour would score like an object
                raise _unusable_box(path, box, problem)
            img = self._image(path, boxed)
            if boxed:  # a missing box (None) is refused by crop_box, not taken for the whole image
                problem = subpixel_box_problem(box, img.size)  # a sliver: the same flat pixel once cropped
                if problem is not None:
                    raise _unusable_box(path, box, problem)
                img = crop_box(img, box, path=path)
            return i, self.transform(img), None
        except ImageLoadError as e:
            return i, None, e.skipped_message
        except Exception as e:  # a transform failing on a degenerate image
            return i, None, f"{path!r}: {type(e).__name__}: {e}"


def _unusable_box(path, box, problem):
    """The error of an object whose box holds no usable pixel of its image (``problem`` says why)."""
    return ImageLoadError(f"bounding_box {list(box)!r} of an object in image {os.fspath(path)!r} {problem}",
                          "fix the box ([x, y, w, h] in 0..1, at least one pixel wide and high) or remove the object")


def _collate(batch):
    import torch

    idx = [b[0] for b in batch if b[1] is not None]
    tensors = [b[1] for b in batch if b[1] is not None]
    failed = [(b[0], b[2]) for b in batch if b[1] is None]
    return idx, (torch.stack(tensors) if tensors else None), failed


class PyramidExtractor:
    """Multi-level embeddings from a timm backbone.

    Args:
        model_name: timm model name, or ``"auto"`` (ResNet50 from the hub when
            reachable, else the bundled offline EfficientNet-Lite0).
        levels: level indices and/or module names (``["conv1", "layer1",
            "layer2"]`` for ResNet50); ``None`` = all levels.
        mode: ``"pool"`` or ``"flatten"`` (see module docstring).
        grid: pooling grid side for ``mode="pool"`` (1, 2 or 4 typical).
        weights: weight source, see :func:`ood_core.weights.create_timm_model`.
        device: torch device string.
    """

    def __init__(self, model_name="auto", *, levels=None, mode="pool", grid=1, weights=None, device="cpu"):
        import timm
        import torch

        from .validation import check_device
        from .weights import create_timm_model, require_timm_model

        check_device(device)
        if mode not in MODES:
            raise OODInputError(f"unknown pyramid mode {mode!r}; use one of {MODES}")
        from .validation import is_int

        if mode == "pool" and (not is_int(grid) or grid < 1):  # True is not a grid of 1
            raise OODInputError(f"grid must be a positive integer (1 = global average pooling); got {grid!r}")

        model = None
        if model_name == "auto":
            # Let the fallback chain pick the backbone before levels are resolved by name.
            model, source = create_timm_model("auto", weights=weights, features_only=True)
            model_name = source["model_name"]
            module_names = list(model.feature_info.module_name())
        else:
            require_timm_model(model_name)
            probe = timm.create_model(model_name, pretrained=False, features_only=True)
            module_names = list(probe.feature_info.module_name())
            del probe
        indices = resolve_levels(module_names, levels)
        if model is None or indices != list(range(len(module_names))):
            # out_indices lets timm drop the stages after the deepest chosen level.
            model, source = create_timm_model(
                model_name, weights=weights, features_only=True, out_indices=tuple(indices)
            )
        # channels-last: +21% and +35% images/s in two runs of benchmarks/bench_cpu_choices.py
        # (same embeddings to 2e-5); timm's convolutions run faster in NHWC on CPU
        model = model.eval().to(device).to(memory_format=torch.channels_last)

        data_cfg = timm.data.resolve_data_config({}, model=model)
        self.model = model
        self.device = device
        # an elongated image is cut to its centre first: the crop keeps no more (see bounded_transform)
        self.transform = bounded_transform(timm.data.create_transform(**data_cfg, is_training=False))
        self.decode_size = decode_size(self.transform)  # whole images are decoded keeping it (images.load_rgb)
        self.model_name = model_name
        self.level_indices = indices
        self.level_names = [module_names[i] for i in indices]
        self.mode = mode
        self.grid = int(grid) if mode == "pool" else None
        self.weights_source = source
        self.data_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in data_cfg.items()}
        self.channels = [int(c) for c in model.feature_info.channels()]
        self.reductions = [int(r) for r in model.feature_info.reduction()]
        self.dim = self._compute_dim()

    def _compute_dim(self):
        _, h, w = self.data_config["input_size"]
        if self.mode == "pool":
            return sum(self.channels) * self.grid**2
        r = max(self.reductions)
        return sum(self.channels) * int(np.ceil(h / r)) * int(np.ceil(w / r))

    @property
    def config(self):
        """JSON-serialisable description of exactly how embeddings are made."""
        return {
            "model_name": self.model_name,
            "weights": self.weights_source,
            "levels": self.level_names,
            "level_indices": self.level_indices,
            # Channels per chosen level, in level order: the embedding is one contiguous
            # block of channels[l] * (dim / sum(channels)) values per level, so level
            # subsets can be sliced from stored embeddings (ood_core.fo.experiments).
            "channels": self.channels,
            "mode": self.mode,
            "grid": self.grid,
            "dim": self.dim,
            "input_size": self.data_config["input_size"],
            "interpolation": self.data_config.get("interpolation"),
            "crop_pct": self.data_config.get("crop_pct"),
            "mean": self.data_config.get("mean"),
            "std": self.data_config.get("std"),
        }

    def decoding(self, boxed):
        """How this extractor reads files (:func:`.images.decoding_record`): an object's box is cut from the full
        decode (``boxed``), a whole image is decoded no larger than the transform needs."""
        return decoding_record(None if boxed else self.decode_size)

    def embed_tensor(self, x):
        """Embeddings ``(B, D)`` float32 numpy for a preprocessed batch tensor."""
        import torch

        with torch.inference_mode():
            feats = self.model(x.to(self.device).contiguous(memory_format=torch.channels_last))
            return combine_levels(feats, self.mode, self.grid or 1).float().cpu().numpy()

    def embed_images(self, images):
        """Embeddings for a list of PIL images (any mode)."""
        import torch

        from .images import to_rgb

        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = torch.stack([self.transform(to_rgb(im)) for im in images])
        return self.embed_tensor(batch)

    def iter_extract(self, items, *, batch_size=32, num_workers=0, skip_failures=False, progress=None, names=None):
        """Embed image files batch by batch; memory does not grow with ``len(items)``.

        Yields ``(ok_indices, embeddings, failures)`` per batch, where
        ``embeddings[i]`` belongs to ``items[ok_indices[i]]`` and ``failures``
        lists ``(item index, message)`` of the batch's unreadable items.
        Arguments as :meth:`extract`; ``names[i]`` (optional) is what the error that stops at ``items[i]`` calls
        it (e.g. ``"sample <id>"``), default ``"item <i>"``.
        """
        from torch.utils.data import DataLoader

        from .validation import check_positive_int, is_int

        check_positive_int(batch_size, "batch_size")
        if not is_int(num_workers) or num_workers < 0:
            raise OODInputError(f"num_workers={num_workers!r} is not valid; pass 0 (decode in this process) or a "
                                "positive number of decoding worker processes")
        if isinstance(items, (str, os.PathLike)):
            raise OODInputError(f"items={items!r} is one path, not a list of them; pass a list, e.g. [path]")
        items = list(items)
        if not items:
            raise OODInputError("no images to embed: the view or item list is empty")
        loader = DataLoader(
            _ItemDataset(items, self.transform, self.decode_size),
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=_collate,
        )
        with Progress(progress, len(items), "pyramid embeddings") as bar:
            for idx, x, failed in loader:
                if failed and not skip_failures:  # the messages leave the advice to skip out: it is added once
                    where = names[failed[0][0]] if names is not None else f"item {failed[0][0]}"
                    raise ImageLoadError(f"{failed[0][1]} ({where})", None,
                                         "; pass skip_failures=True to skip unreadable images and objects")
                for i, msg in failed:
                    logger.debug("skipped item %d: %s", i, msg)  # the callers list them and warn once per call
                emb = self.embed_tensor(x) if x is not None else np.zeros((0, self.dim), np.float32)
                yield np.asarray(idx, dtype=np.int64), emb, failed
                bar.update(len(idx) + len(failed))

    def extract(self, items, *, batch_size=32, num_workers=0, skip_failures=False, progress=None, names=None):
        """Embed image files.

        Args:
            items: list of paths, or of ``(path, [x, y, w, h])`` relative boxes
                to embed object crops.
            batch_size: images per forward pass.
            num_workers: DataLoader worker processes for decoding (0 = main
                process); decoding then overlaps the forward pass.
            skip_failures: when False the first unreadable image raises
                :class:`ImageLoadError`; when True it is reported in
                ``failures`` and skipped.
            progress: see :mod:`ood_core.progress`.
            names: what the error that stops at ``items[i]`` calls it (:meth:`iter_extract`).

        Returns:
            :class:`ExtractionResult`
        """
        chunks, ok, failures = [], [], []
        for idx, emb, failed in self.iter_extract(
            items, batch_size=batch_size, num_workers=num_workers, skip_failures=skip_failures, progress=progress,
            names=names,
        ):
            chunks.append(emb)
            ok.append(idx)
            failures.extend(failed)
        emb = np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)
        return ExtractionResult(emb, np.concatenate(ok) if ok else np.zeros(0, np.int64), failures)


def random_projection_matrix(in_dim, out_dim, seed=0):
    """Seeded Gaussian projection ``(in_dim, out_dim)`` scaled by ``1/sqrt(out_dim)``.

    Johnson-Lindenstrauss: pairwise distances are preserved up to a small
    relative error, so k-NN scores survive the reduction. Regenerated from the
    seed, so nothing needs storing for a resumed run.
    """
    if not 0 < out_dim <= in_dim:
        raise OODInputError(f"n_components={out_dim} must be between 1 and the embedding dimension {in_dim}")
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((in_dim, out_dim)) / np.sqrt(out_dim)).astype(np.float32)
