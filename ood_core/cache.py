"""The package's cache folder and content identities of files (no torch, no FiftyOne).

Weights converted once, text embeddings, the WordNet copy and the file
identity cache live under :func:`cache_root`.
"""

import hashlib
import json
import logging
import os
import time

logger = logging.getLogger(__name__)


#: Environment variable naming the package's cache root (weights, text embeddings, WordNet copy).
ENV_CACHE_DIR = "FIFTYONE_OOD_CACHE_DIR"


def cache_root():
    """The package's cache root (not created).

    ``$FIFTYONE_OOD_CACHE_DIR``, else ``$XDG_CACHE_HOME/fiftyone-ood``, else
    ``~/.cache/fiftyone-ood``.
    """
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return os.path.expanduser(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = os.path.expanduser(xdg) if xdg else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fiftyone-ood")


def cache_dir(*parts):
    """Return (and create) a folder under the cache root (see :func:`cache_root`)."""
    path = os.path.join(cache_root(), *parts)
    os.makedirs(path, exist_ok=True)
    return path


#: In-process memo of :func:`file_identity`: (absolute path, size, mtime_ns) -> identity.
_IDENTITY_MEMO = {}
#: At most this many files are remembered in the on-disk identity cache.
_IDENTITY_CACHE_ENTRIES = 1000
# A file modified this recently may still change within the same mtime tick (filesystem
# timestamps are coarse), so its hash is not cached; git treats "racily clean" files alike.
_RACY_SECONDS = 2.0


def _hash_file(path):
    """sha256 of the whole file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _identity_cache_file():
    return os.path.join(cache_dir("identity"), "file_identity.json")


def _read_identity_cache():
    try:
        with open(_identity_cache_file(), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # no cache yet, or a damaged one: it is only a cache


def _write_identity_cache(key, identity):
    data = _read_identity_cache()
    data.pop(key, None)
    data[key] = identity
    for old in list(data)[: max(0, len(data) - _IDENTITY_CACHE_ENTRIES)]:
        del data[old]
    path = _identity_cache_file()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)  # atomic: concurrent writers lose entries, never corrupt the file
    except OSError as e:
        logger.info("could not write the file identity cache %s: %s", path, e)


def file_identity(path):
    """A short content hash of a file: the first 16 hex digits of sha256 of the whole file.

    The whole file is hashed, so a checkpoint that differs anywhere (e.g. one changed
    layer in the middle) gets a new identity. Hashing a 600 MB checkpoint takes seconds,
    so the result is cached by (absolute path, size, mtime_ns, inode, ctime_ns), in memory and
    in a small JSON file under the cache directory (:func:`cache_dir`); a file changed since
    is hashed again. The change time is in the key because a checkpoint of the same size
    copied in with its old modification time (``cp -p``, ``rsync -a``, an archive) keeps
    size and mtime, but the kernel sets ctime on every write or rename and nothing can set it
    back. The path and times are not part of the identity: a copy of the same file elsewhere
    has the same identity.
    """
    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_ctime_ns}"
    if key in _IDENTITY_MEMO:
        return _IDENTITY_MEMO[key]
    cacheable = time.time_ns() - st.st_mtime_ns > _RACY_SECONDS * 1e9
    identity = _read_identity_cache().get(key) if cacheable else None
    if identity is None:
        identity = _hash_file(path)
        if cacheable:
            _write_identity_cache(key, identity)
    if cacheable:
        _IDENTITY_MEMO[key] = identity
    return identity
