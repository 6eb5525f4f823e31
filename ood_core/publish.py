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
def temporary_beside(path, kind="file"):
    """Yield the path of a temporary file to write ``path``'s new content into (not created yet; create it, e.g.
    ``open(tmp, "x")``) and publish from; on the same file system as ``path`` (hard links and renames work).

    It lies in a new private folder beside ``path`` (``.<name>.tmp-<random>``, made by ``mkdtemp``, which never
    takes a name that exists), so nothing of anyone else's is there to be overwritten, deleted or
    followed. Its claim (:data:`CLAIM`, naming ``kind``: what the caller publishes) is written first, so a kill
    while the file is written leaves a folder provably the package's (:func:`recover_beside`). Afterwards that
    file (when still there: :func:`publish_file` moves it), the claim and the folder are removed; the folder only
    when empty, so nothing this call did not create is ever deleted.
    """
    folder = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=os.path.dirname(os.path.abspath(path)))
    tmp = os.path.join(folder, os.path.basename(path))
    claim = os.path.join(folder, CLAIM)
    try:
        with open(claim, "x", encoding="utf-8") as f:  # before the file: a kill while writing it leaves a claim
            f.write(_claim_text(folder, kind))
        yield tmp
    finally:
        for made in (tmp, claim):  # the claim last: a kill half-way leaves the folder provably ours (or empty)
            with contextlib.suppress(FileNotFoundError):
                os.remove(made)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


#: the file naming a staging folder's own random suffix, written into it right after it is made: it proves the
#: folder was made by :func:`temporary_beside` (a file partly written when killed carries no mark of its own)
CLAIM = ".fiftyone-ood-staging"


def _claim_text(folder, kind):
    """The claim of a staging folder: the kind of file it stages and the folder's own random suffix."""
    return f"fiftyone-ood {kind} {os.path.basename(folder).rsplit('.tmp-', 1)[-1]}"


def _is_claimed(folder, kind):
    claim = os.path.join(folder, CLAIM)
    if os.path.islink(claim) or not os.path.isfile(claim):
        return False
    try:
        with open(claim, encoding="utf-8") as f:
            return f.read(200) == _claim_text(folder, kind)
    except (OSError, ValueError):
        return False


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


@contextlib.contextmanager
def folder_lock(folder, refusal, timeout=120.0):
    """Hold an exclusive lock on the real folder ``folder`` (``flock`` on the folder itself: no file is made, and
    the system drops it when the process dies), waiting up to ``timeout`` s for another holder (then
    :class:`OODInputError` ``refusal``); yields whether it is held (False where folders cannot be locked: then
    nothing may be judged a dead publish's)."""
    import fcntl
    import time

    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield False
        return
    try:
        held, deadline = False, time.monotonic() + timeout
        while not held:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OODInputError(refusal) from None
                time.sleep(0.05)
            except OSError:  # this file system cannot lock folders
                break
        yield held
    finally:
        os.close(fd)  # releases the lock


def recover_beside(path, is_ours, choose=None, done=None, kind="file"):
    """Put right what killed publishes of ``path`` left beside it (:func:`leftovers_beside`); the caller makes sure no
    publish into ``path`` is running. With only provably safe steps:

    - when nothing is at ``path``, the first of ``choose(asides, staged)`` (default: the earlier files aside, newest
      first) that goes back in place (never over a file that appeared meanwhile); only files ``is_ours`` are offered;
    - earlier files aside that are ``is_ours`` are deleted once the file in place is ``is_ours`` too;
    - a staging folder is deleted when it is empty, holds nothing but an ``is_ours`` file under ``path``'s name, or
      holds its own claim of ``kind`` (:data:`CLAIM`) and at most a file under that name (any content: a
      half-written one). A claim of another kind (a publish of other files, running under another lock) stays.

    Anything else is left as it is. Returns ``done``: ``{"restored": [...], "removed": [...]}``."""
    done = {"restored": [], "removed": []} if done is None else done
    choose = choose or (lambda asides, staged: asides)
    asides, folders = leftovers_beside(path)
    asides = sorted((f for f in asides if is_ours(f)), key=lambda f: -os.stat(f).st_mtime_ns)
    name = os.path.basename(path)
    staged = {folder: _staged_content(folder, name, is_ours, kind) for folder in folders}
    if not os.path.lexists(path):
        ours = [f for f in staged.values() if f and is_ours(f)]
        for candidate in choose(asides, ours):
            if put_back(candidate, path):  # never over a file that appeared meanwhile
                done["restored"].append(candidate)
                break
    if os.path.lexists(path) and is_ours(path):  # replaced by the file in place: what the publish would delete
        for aside in asides:
            if os.path.lexists(aside):
                os.remove(aside)
                done["removed"].append(aside)
    for folder, content in staged.items():
        if content is False:
            continue  # holds something that is not provably ours: left as it is
        for made in (content, os.path.join(folder, CLAIM)):  # the claim last, as temporary_beside does
            with contextlib.suppress(FileNotFoundError):
                if made:
                    os.remove(made)
        with contextlib.suppress(OSError):
            os.rmdir(folder)
            done["removed"].append(folder)
    return done


def _staged_content(folder, name, is_ours, kind):
    """What a staging folder holds: None when nothing of a file (empty, or only its claim), the path of the staged
    file when the folder is provably ours (claimed, or holding only an ``is_ours`` file), False otherwise."""
    try:
        entries = set(os.listdir(folder))
    except OSError:
        return False
    staged = os.path.join(folder, name)
    plain = not os.path.islink(staged) and os.path.isfile(staged)
    if _is_claimed(folder, kind):
        entries.discard(CLAIM)
        if not entries:
            return None
        return staged if entries == {name} and plain else False
    if not entries:
        return None
    return staged if entries == {name} and plain and is_ours(staged) else False
