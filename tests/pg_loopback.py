"""A real PostgreSQL + pgvector server on 127.0.0.1 for tests and benchmarks.

The binaries come from PyPI's ``pgserver`` wheel (PostgreSQL 16 with the
pgvector extension compiled in); Debian 12 has no pgvector package. The wheel's
own launcher only listens on a Unix socket, so this module runs ``initdb`` and
``pg_ctl`` itself with TCP on loopback and a free port.

PostgreSQL refuses to run as root. As root, the server tree is copied into the
server folder (the venv may live under a 0700 home) and run as ``nobody``.
"""

import os
import shutil
import socket
import subprocess
import tempfile


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pgserver_package_dir():
    """The ``pgserver`` package folder (not imported: its import has side effects), or None."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = list(spec.submodule_search_locations)[0]
    return path if os.path.isfile(os.path.join(path, "pginstall", "bin", "postgres")) else None


class LoopbackPostgres:
    """Start with :meth:`start`, connect with :attr:`connection_string`, end with :meth:`stop`."""

    def __init__(self, folder=None):
        self.folder = folder or tempfile.mkdtemp(prefix="ood-pg-")
        self.port = None
        self._bin = None
        self._run_kwargs = {}

    @property
    def connection_string(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, exe, *args, timeout=60):
        cmd = [os.path.join(self._bin, exe), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **self._run_kwargs)
        if proc.returncode != 0:
            log = os.path.join(self.folder, "server.log")
            tail = open(log).read()[-2000:] if os.path.exists(log) else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}\n{tail}")
        return proc.stdout

    def start(self):
        package = pgserver_package_dir()
        if package is None:
            raise RuntimeError("the pgserver wheel is not installed: pip install pgserver")
        data = os.path.join(self.folder, "data")
        if os.geteuid() == 0:
            # The binaries find their libraries at $ORIGIN/../../../pgserver.libs: keep that layout.
            site = os.path.join(self.folder, "site")
            install = os.path.join(site, "pgserver", "pginstall")
            shutil.copytree(os.path.join(package, "pginstall"), install, symlinks=True)
            shutil.copytree(package + ".libs", os.path.join(site, "pgserver.libs"), symlinks=True)
            import pwd

            user = pwd.getpwnam("nobody")
            for root, dirs, files in os.walk(self.folder):
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._run_kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        else:
            install = os.path.join(package, "pginstall")
        self._bin = os.path.join(install, "bin")
        self._run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
        self.port = _free_port()
        opts = f"-h 127.0.0.1 -p {self.port} -k {data} -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", data, "-w", "-t", "60", "-l", os.path.join(self.folder, "server.log"),
                  "-o", opts, "start", timeout=90)
        return self

    def stop(self):
        if self.port is not None:
            try:
                self._run("pg_ctl", "-D", os.path.join(self.folder, "data"), "-m", "immediate", "stop")
            finally:
                self.port = None
        shutil.rmtree(self.folder, ignore_errors=True)
