"""Which local files an App user may name: file parameters only from allowed folders.

An App operator runs on the server, so a file path typed into its form (a word list,
a weights file, a WordNet folder; the audit's HTML report file and export folder) is
read or written with the server's permissions. :func:`check_allowed_path` resolves such
a path (symlinks and ``..`` included) and accepts it only inside an allowed folder:

- the package cache root (:func:`ood_core.cache.cache_root`) and ``~/fiftyone`` (always);
- plus the folders listed in ``$FIFTYONE_OOD_ALLOWED_DIRS`` (separated by ``os.pathsep``,
  ``:`` on Linux and macOS).

The check runs where the operation runs: in the App server for immediate runs, and again
in the ``fiftyone delegated launch`` worker for scheduled ones, so both need the variable.

Refusals list the allowed folders and how to add one. They never say whether a path
outside them exists, and never quote a file's contents: the message is the same for
an existing and a missing file.
"""

import os

from .errors import OODInputError

#: Environment variable listing the folders App file parameters may come from.
ENV_ALLOWED_DIRS = "FIFTYONE_OOD_ALLOWED_DIRS"


def default_allowed_dirs():
    """The folders always allowed: the cache root and ``~/fiftyone`` (the audit's default report folder)."""
    from .cache import cache_root

    return [cache_root(), os.path.join(os.path.expanduser("~"), "fiftyone")]


def configured_allowed_dirs():
    """The allowed folders: :func:`default_allowed_dirs`, then those of ``$FIFTYONE_OOD_ALLOWED_DIRS`` (which
    adds folders, never removes the defaults), each once."""
    env = os.environ.get(ENV_ALLOWED_DIRS, "")
    dirs = default_allowed_dirs() + [d.strip() for d in env.split(os.pathsep) if d.strip()]
    return list(dict.fromkeys(dirs))


def allow_folder_howto():
    """How to allow another folder: the variable, for the App server and the delegated workers."""
    return (
        f"to allow another folder, add it to the environment variable {ENV_ALLOWED_DIRS} "
        f"(folders separated by {os.pathsep!r}) of the process that runs the FiftyOne App AND of every "
        "`fiftyone delegated launch` worker (a scheduled run checks the path again in the worker), then "
        "restart them"
    )


def home_relative(path):
    """``path`` as the App shows it: ``~/...`` when it lies in the home folder (the user's own files, as a shell
    writes them), else unchanged. Only for display and form defaults; :func:`check_allowed_path` expands ``~``."""
    home = os.path.expanduser("~")
    text = os.fspath(path)
    absolute = os.path.abspath(os.path.expanduser(text))
    if home not in ("~", os.sep) and _inside(absolute, os.path.abspath(home)):
        return "~" + absolute[len(os.path.abspath(home)):]
    return text


def _inside(path, folder):
    return os.path.commonpath([path, folder]) == folder


def check_allowed_path(path, what, *, allowed_dirs=None):
    """Return the resolved real path of ``path`` if it lies inside an allowed folder.

    Both the path as written (made absolute, ``..`` collapsed) and its real path
    (symlinks resolved) must lie inside one of the folders, so neither ``..`` nor a
    symlink leads out of them. Whether the file exists is not checked: the caller's
    own "does not exist" error then concerns an allowed path only.

    Args:
        path: the path a user gave (``~`` is expanded; relative paths are relative
            to the server's working directory).
        what: how the error names the parameter, e.g. ``"word_list"``.
        allowed_dirs: the allowed folders; ``None`` = :func:`configured_allowed_dirs`.

    Raises:
        OODInputError: ``path`` is not a non-empty path string, or lies outside the
            allowed folders; the message lists them and how to add one.
    """
    dirs = list(allowed_dirs) if allowed_dirs is not None else configured_allowed_dirs()
    shown = [os.path.abspath(os.path.expanduser(os.fspath(d))) for d in dirs]
    how = allow_folder_howto()
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).strip() or "\0" in os.fspath(path):
        raise OODInputError(
            f"{what} must be a file path (a non-empty string without NUL characters) inside "
            f"the allowed folders {shown}; got a {type(path).__name__} that is not one"
        )
    raw = os.fspath(path)
    written = os.path.abspath(os.path.expanduser(raw))
    real = os.path.realpath(written)
    real_dirs = [os.path.realpath(d) for d in shown]
    if any(_inside(written, d) for d in shown + real_dirs) and any(_inside(real, d) for d in real_dirs):
        return real
    raise OODInputError(
        f"{what} {raw!r} is not inside the allowed folders {shown}: move the file into one "
        f"of them, or {how}."
    )



def check_app_file(value, what, *, may_be_tag=False):
    """A file parameter from the App: None/"" stays None; a path must lie in the allowed folders.

    With ``may_be_tag``, a value that does not look like a path (no folder
    separator, no ``~``, no file suffix such as ``.safetensors``) is a name the
    library resolves itself (an open_clip tag like ``"openai"``, or
    ``"bundled"``) and is returned unchanged. Existence is never probed here.
    """
    if value in (None, ""):
        return None
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else value
    if may_be_tag and isinstance(text, str):
        pathlike = os.sep in text or (os.altsep and os.altsep in text) or text.startswith("~") or \
            os.path.splitext(text)[1] != ""
        if not pathlike:
            return text
    return check_allowed_path(text, what)
