"""Disk cache of candidate-word text embeddings (encoding WordNet takes minutes on CPU).

An entry is keyed by the sha256 of everything that changes the embeddings:

- the encoder's model name and ``weights_identity`` (a different checkpoint file, a
  different tag or a different QuickGELU setting gives a different key),
- its text pipeline identity (open_clip version, for the tokenizer), when it has one,
- the words and their parts of speech, in order,
- the prompt templates per part of speech,
- the storage dtype.

Each entry is ``<cache dir>/text_embeddings/<key>.npy`` plus ``<key>.json`` metadata
(model, weights, counts, templates, dtype). Storage is **float32** by default, so a
cache hit returns exactly what a fresh encode returns; ``dtype="float16"`` halves the
disk use (about 140 MB instead of 285 MB for 139k WordNet words at dimension 512) at
a relative error near 1e-3, and then a miss returns the same float16-rounded values as
a later hit. Files are written to a temporary name and renamed, so a crash or a
concurrent writer never leaves a truncated entry; the ``.json`` is written last and
marks an entry as complete.

The cache directory is the package's cache root (:func:`ood_core.cache.cache_root`:
``$FIFTYONE_OOD_CACHE_DIR``, else ``$XDG_CACHE_HOME/fiftyone-ood``, else
``~/.cache/fiftyone-ood``).
"""

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..cache import cache_root
from ..errors import OODInputError

_FORMAT_VERSION = 1
_DTYPES = ("float32", "float16")


def build_prompts(words, pos, templates):
    """Format each word with the template of its part of speech.

    ``templates`` maps POS (``"noun"``, ``"adj"``) to a ``str.format`` template with
    one ``{}``; raises :class:`OODInputError` for a POS without a template.
    """
    if len(words) != len(pos):
        raise OODInputError(
            f"got {len(words)} words but {len(pos)} POS tags; give one POS per word."
        )
    missing = sorted(set(pos) - set(templates))
    if missing:
        raise OODInputError(
            f"no prompt template for part(s) of speech {missing}; templates cover "
            f"{sorted(templates)}."
        )
    for p, t in templates.items():
        if not isinstance(t, str) or t.count("{}") != 1:
            raise OODInputError(
                f"template for {p!r} must be a string with exactly one '{{}}'; got {t!r}."
            )
    return [templates[p].format(w) for w, p in zip(words, pos)]


def text_cache_key(model_name, weights_identity, words, pos, templates, *,
                   pipeline_identity="", dtype="float32"):
    """sha256 hex key of an embedding set (see the module docstring for its inputs)."""
    h = hashlib.sha256()
    header = {
        "format": _FORMAT_VERSION,
        "model": str(model_name),
        "weights": str(weights_identity),
        "pipeline": str(pipeline_identity),
        "templates": {str(k): str(v) for k, v in sorted(templates.items())},
        "dtype": dtype,
        "count": len(words),
    }
    h.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    for w, p in zip(words, pos):
        # Tab/newline cannot occur inside a normalised word, so entries cannot collide.
        h.update(f"\n{w}\t{p}".encode("utf-8"))
    return h.hexdigest()


def _atomic_write(path, write):
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_folder_arg(value, name, purpose):
    """Refuse a folder argument that is neither None nor a path (``Path(5)`` fails deep inside)."""
    if value is not None and (not isinstance(value, (str, os.PathLike)) or not os.fspath(value)):
        raise OODInputError(f"{name}={value!r} is not a folder path; pass a folder {purpose}")


def cached_text_embeddings(encoder, words, pos, templates, *, cache_dir=None,
                           progress=None, batch_size=256, dtype="float32"):
    """Return unit-norm float32 ``(len(words), D)`` embeddings of the prompts, cached on disk.

    Args:
        encoder: a :class:`~ood_core.clip.encoder.CLIPEncoder` (anything with ``model_name``,
            ``weights_identity`` and ``encode_texts(texts, batch_size, progress)``).
        words, pos: the vocabulary and one ``"noun"``/``"adj"`` tag per word.
        templates: POS -> template, e.g. ``{"noun": "the nice {}", "adj": "This is a {} photo"}``.
        cache_dir: root cache directory (default :func:`ood_core.cache.cache_root`).
        progress: passed to ``encode_texts`` on a cache miss.
        dtype: storage dtype, ``"float32"`` (default, exact) or ``"float16"``.
    """
    check_folder_arg(cache_dir, "cache_dir", "for cached text embeddings (or None for the package's cache)")
    root = Path(cache_dir if cache_dir is not None else cache_root())
    if root.exists() and not root.is_dir():
        raise OODInputError(f"cache_dir={str(root)!r} is a file, not a folder; pass a folder for cached text "
                            "embeddings (or None for the package's cache)")
    if dtype not in _DTYPES:
        raise OODInputError(f"dtype must be one of {_DTYPES}; got {dtype!r}.")
    words = list(words)
    pos = list(pos)
    prompts = build_prompts(words, pos, templates)
    key = text_cache_key(
        encoder.model_name,
        encoder.weights_identity,
        words,
        pos,
        templates,
        pipeline_identity=getattr(encoder, "text_pipeline_identity", ""),
        dtype=dtype,
    )
    folder = root / "text_embeddings"
    npy_path = folder / f"{key}.npy"
    meta_path = folder / f"{key}.json"

    if meta_path.is_file() and npy_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            arr = np.load(npy_path, allow_pickle=False)
            if meta.get("key") == key and arr.shape[0] == len(words) and arr.ndim == 2:
                return np.ascontiguousarray(arr, dtype=np.float32)
        except (OSError, ValueError):
            pass  # unreadable or partial entry: recompute and overwrite it

    emb = np.asarray(encoder.encode_texts(prompts, batch_size=batch_size, progress=progress))
    if emb.ndim != 2 or emb.shape[0] != len(words):
        raise OODInputError(
            f"encoder returned shape {emb.shape} for {len(words)} prompts; expected "
            "(num_prompts, dim)."
        )
    stored = emb.astype(dtype)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(npy_path, lambda f: np.save(f, stored, allow_pickle=False))
    meta = {
        "key": key,
        "format": _FORMAT_VERSION,
        "model": encoder.model_name,
        "weights": encoder.weights_identity,
        "pipeline": getattr(encoder, "text_pipeline_identity", ""),
        "num_words": len(words),
        "num_nouns": sum(1 for p in pos if p == "noun"),
        "num_adjectives": sum(1 for p in pos if p == "adj"),
        "dim": int(stored.shape[1]),
        "dtype": dtype,
        "templates": dict(templates),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode("utf-8")))
    return np.ascontiguousarray(stored, dtype=np.float32)
