"""Column blocks of stored pyramid embeddings: which columns belong to which backbone level.

Both pyramid modes (:mod:`ood_core.features`) store one contiguous block per
level, in level order, so a level subset can be sliced from stored embeddings
without re-extracting anything.
"""

import numpy as np

from .errors import OODInputError


def level_channels(backbone):
    """Channels per stored level: from the config, else from timm's feature_info (no weights loaded)."""
    if backbone.get("channels"):
        return [int(c) for c in backbone["channels"]]
    import timm

    model = timm.create_model(backbone["model_name"], pretrained=False, features_only=True,
                              out_indices=tuple(backbone["level_indices"]))
    return [int(c) for c in model.feature_info.channels()]


def level_blocks(backbone, dim):
    """``[(level name, backbone level index, start column, stop column)]`` of stored embeddings.

    Both pyramid modes store one contiguous block per level, in level order:
    ``channels[l] * spatial`` columns where ``spatial = dim / sum(channels)``
    (``grid**2`` in pool mode, the deepest level's ``h * w`` in flatten mode).
    """
    names = list(backbone.get("levels") or [])
    indices = list(backbone.get("level_indices") or range(len(names)))
    channels = level_channels(backbone)
    if len(channels) != len(names):
        raise OODInputError(
            f"the embeddings config lists {len(names)} levels but {len(channels)} channel counts; recompute the "
            "embeddings with this version of fiftyone-ood"
        )
    spatial, rem = divmod(int(dim), sum(channels))
    if rem or spatial == 0:
        raise OODInputError(
            f"embeddings have dimension {dim}, not a multiple of the {sum(channels)} channels of levels {names}; "
            "they were not made by this backbone config, so levels cannot be sliced"
        )
    blocks, start = [], 0
    for name, index, c in zip(names, indices, channels):
        blocks.append((name, int(index), start, start + c * spatial))
        start += c * spatial
    return blocks


def resolve_level_subset(blocks, subset):
    if subset is None or subset == "all":
        return list(blocks)
    if isinstance(subset, (int, str, np.integer)):
        subset = [subset]
    chosen = []
    for level in subset:
        match = [b for b in blocks if (isinstance(level, str) and b[0] == level)
                 or (not isinstance(level, str) and b[1] == int(level))]
        if not match:
            raise OODInputError(
                f"level {level!r} is not among the stored levels {[b[0] for b in blocks]} (backbone indices "
                f"{[b[1] for b in blocks]}); choose level subsets of the stored embeddings"
            )
        if match[0] not in chosen:
            chosen.append(match[0])
    if not chosen:
        raise OODInputError("a level subset is empty; give at least one level per subset")
    return sorted(chosen, key=lambda b: b[2])


def level_columns(backbone, dim, levels):
    """Column indices of ``levels`` (names or backbone indices) in stored embeddings of dimension ``dim``."""
    blocks = resolve_level_subset(level_blocks(backbone, dim), levels)
    return np.concatenate([np.arange(b[2], b[3]) for b in blocks])
