"""Putting a finished file in place without ever replacing one the package did not write.

A report or CSV is written whole into a temporary file beside its destination, then published here. Checking the
destination and then renaming over it leaves a window in which someone else's file created (or swapped in) under
that name would be replaced. Publishing closes it with two atomic steps of the file system:

- a file already at the destination is first *renamed aside* (to a name only this call knows) and judged there;
  when it is not the package's own it is put back, and nothing is written;
- the new file is then *hard-linked* to the destination, which fails instead of replacing when a file appeared
  there meanwhile (``os.link`` never overwrites).

Only on a file system without hard links does it fall back to a checked rename (the window remains there).

The temporary file itself (:func:`temporary_beside`) lives in a folder made for the one call (``mkdtemp``: a new,
unpredictable name, mode 0700) beside the destination, so it never takes a name a file of the user's could have,
is never a link someone placed in advance, and removing it afterwards removes only what the call created.
"""

import contextlib
import errno
import os
import re
import tempfile
import uuid

from .errors import OODInputError


def writable_folder(folder, name, value):
    """Create ``folder`` (the folder of the file that parameter ``name`` = ``value`` names) if needed; refuse,
    naming the parameter, a folder that cannot be created or written to."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise OODInputError(f"{name}={value!r}: its folder {folder!r} cannot be created ({e}); pass a {name} in a "
                            "folder you can write to") from None
    if not os.access(folder, os.W_OK):
        raise OODInputError(f"{name}={value!r}: the folder {folder!r} is not writable; pass a {name} in a folder "
                            "you can write to")


def name_limits(folder):
    """``(longest file name, longest path)`` in bytes on the file system of ``folder`` (its nearest existing
    ancestor); 255 / 4096, the common limits, where the system does not say."""
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    limits = []
    for name, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)):
        try:
            limits.append(os.pathconf(folder, name))
        except (OSError, ValueError):
            limits.append(default)
    return tuple(limits)


def publish_file(tmp, path, is_ours, refusal):
    """Move the finished file ``tmp`` to ``path``; an earlier file there is replaced only when ``is_ours(file)``.

    ``refusal``: the message of the :class:`OODInputError` raised when ``path`` holds (or receives meanwhile) a
    file that is not the package's own; that file is left as it is. ``tmp`` is gone afterwards either way.
    """
    aside = None
    try:
        aside = _move_aside(path, is_ours, refusal)
        _link_new(tmp, path, is_ours, refusal)
    except BaseException:
        if aside is not None:
            _put_back(aside, path)
        raise
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)
    if aside is not None:
        os.remove(aside)


@contextlib.contextmanager
def temporary_beside(path):
    """Yield the path of a temporary file to write ``path``'s new content into (not created yet; create it, e.g.
    ``open(tmp, "x")``) and publish from; on the same file system as ``path`` (hard links and renames work).

    It lies in a new private folder beside ``path`` (``.<name>.tmp-<random>``, made by ``mkdtemp``, which never
    takes a name that exists), so nothing of anyone else's is there to be overwritten, deleted or
    followed. Afterwards that file (when still there: :func:`publish_file` moves it) and the folder are removed;
    the folder only when empty, so nothing this call did not create is ever deleted.
    """
    folder = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=os.path.dirname(os.path.abspath(path)))
    tmp = os.path.join(folder, os.path.basename(path))
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def leftovers_beside(path):
    """``(aside files, staging folders)``: what a :func:`publish_file` / :func:`temporary_beside` killed half-way may
    have left beside ``path``, found by name only (``<name>.old-<12 hex>`` regular files, ``.<name>.tmp-<random>``
    real folders; links are never listed). The caller judges them: a name proves nothing."""
    parent, name = os.path.split(os.path.abspath(path))
    aside = re.compile(re.escape(name) + r"\.old-[0-9a-f]{12}")
    staged = re.compile(r"\." + re.escape(name) + r"\.tmp-[a-z0-9_]+")
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return [], []
    files, folders = [], []
    for entry in entries:
        full = os.path.join(parent, entry)
        if os.path.islink(full):
            continue
        if aside.fullmatch(entry) and os.path.isfile(full):
            files.append(full)
        elif staged.fullmatch(entry) and os.path.isdir(full):
            folders.append(full)
    return files, folders


def put_back(aside, path):
    """Move the file ``aside`` to ``path`` unless something is at ``path`` (never replaced, not even one that appears
    meanwhile); returns whether it moved."""
    _put_back(aside, path)
    return not os.path.lexists(aside)


def _move_aside(path, is_ours, refusal):
    """Rename a file at ``path`` to a private name and judge it there; returns that name (None: nothing there)."""
    if not os.path.lexists(path):
        return None
    aside = f"{path}.old-{uuid.uuid4().hex[:12]}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # removed meanwhile: nothing to replace
        return None
    if os.path.islink(aside) or not os.path.isfile(aside) or not is_ours(aside):
        _put_back(aside, path)
        raise OODInputError(refusal)
    return aside


def _link_new(tmp, path, is_ours, refusal):
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OODInputError(refusal) from None  # a file appeared after the old one was moved aside: left as it is
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(path) and not is_ours(path):  # no hard links here: a checked rename
            raise OODInputError(refusal) from None
        os.replace(tmp, path)


def _put_back(aside, path):
    """Return a moved-aside file to ``path``, never over a file that appeared there meanwhile (then it keeps the
    private name ``<path>.old-<token>`` beside it)."""
    try:
        os.link(aside, path, follow_symlinks=False)
    except FileExistsError:
        return
    except OSError:
        if os.path.lexists(path):
            return
        os.rename(aside, path)
        return
    os.remove(aside)
