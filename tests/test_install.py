"""Installing the plugin the ways FiftyOne users do: requirements, pip wheel + register, plugins download.

Each route runs for real: a wheel is built from the repository's files and installed into a
folder, the console-script module registers the plugin, and ``fiftyone plugins download``
fetches a zip archive of the repository from a local HTTP server. Each time a fresh Python
process with its own ``FIFTYONE_PLUGINS_DIR`` must discover every operator and the panel.
"""

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = "@fiftyone-ood/ood"


def _requirements(name):
    with open(os.path.join(REPO, name)) as f:
        return [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]


def test_plugin_requirements_are_runtime_ranges_only():
    runtime = _requirements("requirements.txt")
    names = {re.split(r"[<>=!~ ]", r)[0].lower() for r in runtime}
    assert {"fiftyone", "torch", "timm", "umap-learn"} <= names
    assert not [r for r in runtime if "==" in r], "pins re-pin a user's environment on --install"
    assert not names & {"pytest", "selenium", "pgserver", "psycopg2-binary"}, "test packages in the runtime list"
    dev = _requirements("requirements-dev.txt")
    assert "-r requirements.txt" in dev and {"pytest==9.2.0", "selenium==4.51.0", "torch==2.14.1"} <= set(dev)
    with open(os.path.join(REPO, "setup.sh")) as f:
        setup = f.read()
    assert "cat requirements.txt requirements-dev.txt | sha256sum" in setup  # the venv cache key covers both
    assert "-r requirements.txt -r requirements-dev.txt" in setup


def _plugin_files():
    """The files a clone (or a GitHub archive) holds: tracked + new, not ignored."""
    out = subprocess.run(["git", "-C", REPO, "ls-files", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, text=True, check=True).stdout.split()
    return [f for f in out if os.path.isfile(os.path.join(REPO, f))]


def _copy_clone(dest):
    for rel in _plugin_files():
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(os.path.join(REPO, rel), os.path.join(dest, rel))
    return dest


_DISCOVER = """
import json, fiftyone.operators as foo, fiftyone.plugins as fop
ops = sorted(op.uri for op in foo.list_operators() if op.uri.startswith("{plugin}/"))
print(json.dumps({{"operators": ops, "plugins": [p.name for p in fop.list_plugins()]}}))
"""


def _discover(plugins_dir, pythonpath, cwd):
    """Operators FiftyOne finds in ``plugins_dir``, from a fresh process (no repo on sys.path)."""
    import json

    env = dict(os.environ, FIFTYONE_PLUGINS_DIR=str(plugins_dir), PYTHONPATH=str(pythonpath))
    out = subprocess.run([sys.executable, "-c", _DISCOVER.format(plugin=PLUGIN)], env=env, cwd=str(cwd),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _expected_uris():
    with open(os.path.join(REPO, "fiftyone.yml")) as f:
        meta = yaml.safe_load(f)
    return sorted(f"{PLUGIN}/{n}" for n in meta["operators"] + meta["panels"])


def test_pip_wheel_ships_the_package_and_registers_the_plugin(tmp_path):
    clone = _copy_clone(tmp_path / "clone")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(clone), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("fiftyone_ood-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {"fiftyone_ood_plugin/fiftyone.yml", "fiftyone_ood_plugin/__init__.py",
            "fiftyone_ood_plugin/requirements.txt", "fiftyone_ood_plugin/operators/panel.py",
            "ood_core/__init__.py", "ood_core/fo/install_plugin.py"} <= names
    assert "fiftyone-ood-install-plugin = ood_core.fo.install_plugin:main" in entry_points
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    plugins = tmp_path / "plugins"
    env = dict(os.environ, PYTHONPATH=str(site), FIFTYONE_PLUGINS_DIR=str(plugins))
    run = subprocess.run([sys.executable, "-m", "ood_core.fo.install_plugin"], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    link = plugins / "fiftyone-ood"
    assert os.path.realpath(link) == os.path.realpath(site / "fiftyone_ood_plugin")
    found = _discover(plugins, site, tmp_path)
    assert found["operators"] == _expected_uris() and PLUGIN in found["plugins"]
    # a second run is a no-op; another entry of the same name is refused with the fix
    again = subprocess.run([sys.executable, "-m", "ood_core.fo.install_plugin"], env=env, cwd=str(tmp_path),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    copy = subprocess.run([sys.executable, "-m", "ood_core.fo.install_plugin", "--copy"], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert copy.returncode == 2 and "already exists; pass --overwrite" in copy.stderr
    copy = subprocess.run([sys.executable, "-m", "ood_core.fo.install_plugin", "--copy", "--overwrite"], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert copy.returncode == 0 and not os.path.islink(link) and (link / "fiftyone.yml").is_file()
    assert _discover(plugins, site, tmp_path)["operators"] == _expected_uris()


@pytest.fixture
def archive_server(tmp_path):
    """The repository as a zip archive (like GitHub's) on a local HTTP server; yields its URL."""
    root = tmp_path / "www"
    root.mkdir()
    with zipfile.ZipFile(root / "fiftyone-ood-main.zip", "w") as z:
        for rel in _plugin_files():
            z.write(os.path.join(REPO, rel), f"fiftyone-ood-main/{rel}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fiftyone-ood-main.zip"
    finally:
        server.shutdown()
        server.server_close()


def test_fiftyone_plugins_download_and_requirements_work_from_an_archive(tmp_path, archive_server):
    plugins = tmp_path / "plugins"
    fiftyone_cli = os.path.join(os.path.dirname(sys.executable), "fiftyone")
    env = dict(os.environ, FIFTYONE_PLUGINS_DIR=str(plugins))
    out = subprocess.run([fiftyone_cli, "plugins", "download", archive_server], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # the downloaded plugin carries ood_core beside it, so it works without pip install
    found = _discover(plugins, "", tmp_path)
    assert found["operators"] == _expected_uris()
    out = subprocess.run([fiftyone_cli, "plugins", "requirements", PLUGIN], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "fiftyone>=1.0,<2" in out.stdout and "torch>=2.0" in out.stdout
    assert "==" not in out.stdout and "pytest" not in out.stdout and "selenium" not in out.stdout


def _clone(folder):
    """A folder laid out as the plugin's source (a clone: fiftyone.yml naming the plugin, operators/, .git)."""
    folder.mkdir(parents=True)
    (folder / "fiftyone.yml").write_text(f'name: "{PLUGIN}"\n')
    (folder / "operators").mkdir()
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return folder


def test_installing_never_deletes_the_clone_or_a_folder_that_is_not_the_plugin(tmp_path, monkeypatch):
    """``--overwrite`` with the clone itself as the plugins entry deleted the whole clone (its .git too)."""
    import ood_core.fo.install_plugin as installer
    from ood_core.errors import OODInputError

    plugins = tmp_path / "plugins"
    clone = _clone(plugins / "fiftyone-ood")
    monkeypatch.setattr(installer, "plugin_source", lambda: str(clone))
    assert installer.install_plugin(str(plugins), overwrite=True) == str(clone)  # installed already: left alone
    with pytest.raises(OODInputError, match="is the plugin's own folder .* nothing to copy"):
        installer.install_plugin(str(plugins), copy=True, overwrite=True)
    assert (clone / ".git" / "HEAD").is_file() and not os.path.islink(clone)
    inner = _clone(tmp_path / "p2" / "fiftyone-ood" / "src")  # the entry holds the source
    monkeypatch.setattr(installer, "plugin_source", lambda: str(inner))
    with pytest.raises(OODInputError, match="holds the plugin's source .* replacing it would delete it"):
        installer.install_plugin(str(tmp_path / "p2"), copy=True, overwrite=True)
    assert (inner / ".git" / "HEAD").is_file()
    other = tmp_path / "p3" / "fiftyone-ood"
    other.mkdir(parents=True)
    (other / "thesis.tex").write_text("mine")  # the user's own folder of that name
    with pytest.raises(OODInputError, match="is not a fiftyone-ood plugin .* never replaced"):
        installer.install_plugin(str(tmp_path / "p3"), overwrite=True)
    assert (other / "thesis.tex").read_text() == "mine"
    # replacing an earlier copy that fails half-way leaves the earlier copy, and nothing staged
    entry = installer.install_plugin(str(tmp_path / "p4"), copy=True)
    monkeypatch.setattr(installer.shutil, "copytree", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        installer.install_plugin(str(tmp_path / "p4"), copy=True, overwrite=True)
    assert os.listdir(tmp_path / "p4") == ["fiftyone-ood"] and os.path.isfile(os.path.join(entry, "fiftyone.yml"))
    assert not os.path.islink(entry)
