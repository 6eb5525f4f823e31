"""Register the fiftyone-ood App plugin in FiftyOne's plugins directory.

``pip install fiftyone-ood`` (or ``pip install .`` in a clone) installs two
packages: ``ood_core`` (the Python SDK) and ``fiftyone_ood_plugin`` (the App
plugin: ``fiftyone.yml``, its ``__init__.py`` and ``operators/``). FiftyOne's
App finds plugins only in ``fiftyone.config.plugins_dir``, so this module puts
the plugin there::

    fiftyone-ood-install-plugin            # console script, same as:
    python -m ood_core.fo.install_plugin   # link (default) or --copy

A link keeps the plugin in step with the installed package (upgrades need no
re-run); ``--copy`` makes an independent copy (for plugin directories shared
with machines that do not have this package). In a git clone the plugin is the
clone itself: the repository root is linked.
"""

import argparse
import os
import shutil
import sys
import uuid

from ..errors import OODInputError

#: folder name of the plugin inside the plugins directory
PLUGIN_DIR_NAME = "fiftyone-ood"
PLUGIN_NAME = "@fiftyone-ood/ood"


def plugin_source():
    """The folder holding the plugin's ``fiftyone.yml``: the installed package, else the clone's root."""
    candidates = []
    try:
        import fiftyone_ood_plugin

        candidates.append(os.path.dirname(os.path.abspath(fiftyone_ood_plugin.__file__)))
    except ImportError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.dirname(os.path.dirname(here)))  # <clone>/ood_core/fo -> <clone>
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "fiftyone.yml")) and os.path.isdir(os.path.join(folder, "operators")):
            return folder
    raise OODInputError(
        f"cannot find the fiftyone-ood plugin files (fiftyone.yml + operators/) in {candidates}; reinstall with "
        "'pip install fiftyone-ood' (or 'pip install .' in a clone), or set FIFTYONE_PLUGINS_DIR to the "
        "parent folder of a clone"
    )


def install_plugin(plugins_dir=None, *, copy=False, overwrite=False):
    """Link (or copy) the plugin into ``plugins_dir`` (default ``fiftyone.config.plugins_dir``).

    Returns the plugin's path inside the plugins directory. An existing entry
    that already is the source (a link to it, or the clone itself) is left as it is;
    any other existing entry is refused unless ``overwrite``, and even then a folder
    that holds the source or is not a fiftyone-ood plugin. The new entry is made
    beside the old one and swapped in, so a failure leaves the old entry.
    """
    import fiftyone as fo

    plugins_dir = plugins_dir or fo.config.plugins_dir
    if not plugins_dir:
        raise OODInputError(
            "FiftyOne has no plugins directory configured; set FIFTYONE_PLUGINS_DIR (or 'plugins_dir' in "
            "~/.fiftyone/config.json) or pass --plugins-dir"
        )
    source = plugin_source()
    os.makedirs(plugins_dir, exist_ok=True)
    target = os.path.join(plugins_dir, PLUGIN_DIR_NAME)
    if os.path.lexists(target):
        if _same_folder(target, source):  # a link to the plugin, or the plugin's own folder (a clone there)
            if copy and not os.path.islink(target):
                raise OODInputError(f"{target} is the plugin's own folder ({source}); it is installed already, "
                                    "there is nothing to copy")
            if not copy:
                return target
        _check_replaceable(target, source, overwrite)
    _install_whole(source, target, copy)
    return target


def _same_folder(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


def _check_replaceable(target, source, overwrite):
    """Refuse replacing ``target`` without ``overwrite``; also with it, a folder that holds the source (deleting
    it would delete the plugin's own files, e.g. a clone) or that is not a fiftyone-ood plugin."""
    if not overwrite:
        raise OODInputError(f"{target} already exists; pass --overwrite (overwrite=True) to replace it with the "
                            f"plugin from {source}")
    if os.path.islink(target):
        return  # removing a link never deletes what it points to
    real = os.path.realpath(target)
    if os.path.commonpath([real, os.path.realpath(source)]) == real:
        raise OODInputError(f"{target} holds the plugin's source {source}; replacing it would delete it. Install "
                            "into another plugins directory (--plugins-dir)")
    if not _is_plugin_entry(target):
        raise OODInputError(f"{target} is not a fiftyone-ood plugin (no fiftyone.yml naming {PLUGIN_NAME}); it is "
                            "never replaced. Move it away, or install into another plugins directory (--plugins-dir)")


def _is_plugin_entry(path):
    try:
        with open(os.path.join(path, "fiftyone.yml"), encoding="utf-8") as f:
            return PLUGIN_NAME in f.read()
    except OSError:
        return False


def _install_whole(source, target, copy):
    """Make the new entry beside ``target``, then swap it in: a failure leaves the earlier entry as it was."""
    token = uuid.uuid4().hex[:12]
    staged, old = f"{target}.new-{token}", f"{target}.old-{token}"
    try:
        if copy:
            shutil.copytree(source, staged, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", ".git", ".venv", "tests", "benchmarks", "docs", "build", "*.egg-info"))
        else:
            os.symlink(source, staged, target_is_directory=True)
        if os.path.lexists(target):
            os.rename(target, old)
        os.rename(staged, target)
    except BaseException:
        _remove(staged)
        if os.path.lexists(old) and not os.path.lexists(target):
            os.rename(old, target)
        raise
    _remove(old)


def _remove(path):
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="fiftyone-ood-install-plugin",
        description="Register the fiftyone-ood App plugin in FiftyOne's plugins directory "
                    "(fiftyone.config.plugins_dir, i.e. FIFTYONE_PLUGINS_DIR).",
    )
    parser.add_argument("--plugins-dir", default=None, help="install here instead of fiftyone.config.plugins_dir")
    parser.add_argument("--copy", action="store_true", help="copy the files instead of linking them")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing fiftyone-ood plugin entry")
    args = parser.parse_args(argv)
    try:
        target = install_plugin(args.plugins_dir, copy=args.copy, overwrite=args.overwrite)
    except OODInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"plugin {PLUGIN_NAME} installed at {target}\n"
          f"check: fiftyone plugins list   |   restart the App to load it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
