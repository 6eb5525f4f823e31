"""Which entries of an export folder this package wrote: the marker that lists them, the claim of a staged export.

An export folder holding :data:`MARKER` was written by this package; the marker lists the files the export wrote
with their size and modification time, so a file added later, or one of them changed since, is the user's
(:func:`foreign_files`). A staged export holds :data:`CLAIM` while FiftyOne writes it.
"""

import json
import os

#: the file that marks a folder as an export of this package (which a later export may replace)
MARKER = ".fiftyone_ood_export"
#: the file that marks a staged export as this package's while FiftyOne writes it (before :data:`MARKER` lists its
#: files): it holds the token of the staged folder's name, ``<name>.tmp-<token>``
CLAIM = ".fiftyone_ood_staging"


def is_export_or_empty(path):
    """Whether ``path`` is a real folder holding nothing but an export of this package, unchanged (or nothing)."""
    return os.path.isdir(path) and not os.path.islink(path) and not foreign_files(path)


def listed_entries(folder):
    """Every entry of the folder, at any depth: files, links and folders (an empty folder is an entry too: the
    user's structure made by hand is theirs), as sorted paths relative to it."""
    out = []
    for root, dirs, names in os.walk(folder):
        out += [os.path.relpath(os.path.join(root, n), folder) for n in names + dirs]
    return sorted(out)


def stamp(path):
    """What tells a file an export wrote from the same file changed since: ``[size, modification time in ns]``;
    None for a folder (or a link, which no export writes)."""
    if os.path.islink(path) or not os.path.isfile(path):
        return None
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def foreign_files(folder):
    """The entries of ``folder`` that no export of this package wrote, or that were changed since: all of them
    without :data:`MARKER`; with it, those its list does not name, except folders holding an entry it names (a list
    of an earlier release names files only), and those whose :func:`stamp` differs from the one it lists (a list
    of an earlier release has none); a marker of an earlier release without a list vouches for the whole
    folder."""
    files = listed_entries(folder)
    marker = os.path.join(folder, MARKER)
    if not files:
        return []
    if not os.path.isfile(marker) or os.path.islink(marker):
        return files
    try:
        with open(marker, encoding="utf-8") as f:
            lines = f.read().splitlines()
        listed = json.loads(lines[1]) if len(lines) > 1 else None
        stamps = listed if isinstance(listed, dict) else {}
        listed = set(listed) if listed is not None else None
    except (OSError, ValueError, TypeError):
        return files
    if listed is None:
        return []
    parents = {parent for p in listed for parent in _parents(p)}
    return [f for f in files if f != MARKER and ((f not in listed and f not in parents)
                                                 or (f in stamps and stamp(os.path.join(folder, f)) != stamps[f]))]


def _parents(path):
    """The folders ``path`` (relative) lies in: ``a/b/c`` -> ``a``, ``a/b``."""
    parts = path.split(os.sep)[:-1]
    return [os.sep.join(parts[:i]) for i in range(1, len(parts) + 1)]
