"""Run a Python script as a separate process without paying for ``import fiftyone`` each time.

The crash tests start a fresh process per kill point (a ``python -c`` script killed with SIGKILL
inside some call) and most of each such process's time went into importing FiftyOne and this
package (about 2.5 s). Here one helper process per test worker imports them once and then forks a
child per script: the child is a real, separate process (its own pid, its own database connection,
made after the fork: the helper never connects, which is checked), killed and exiting as
``python -c`` would, with its stdout and stderr captured. Environment variables that FiftyOne
reads when it is imported cannot be changed per script; :func:`run_python` refuses them.
"""

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SERVER = r"""
import json, os, sys, time, traceback

jobs = sys.stdin
reply = os.fdopen(os.dup(1), "w")  # the answers; anything else printed here goes to stderr
os.dup2(2, 1)
import fiftyone
import ood_core
import fiftyone.core.odm.database as _database

while True:
    line = jobs.readline()
    if not line:
        break
    job = json.loads(line)
    if _database._client is not None:  # a forked child must not share a connection
        reply.write(json.dumps({"error": "the helper process connected to the database"}) + "\n")
        reply.flush()
        continue
    sys.stdout.flush()  # nothing buffered here may be written again by a child
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            for fd, path in ((1, job["out"]), (2, job["err"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
            os.environ.clear()
            os.environ.update(job["env"])
            os.chdir(job["cwd"])
            sys.argv = ["-c", *job["args"]]
            try:
                exec(compile(job["script"], "<string>", "exec"), {"__name__": "__main__"})
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, int) and e.code is not None:
                    print(e.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    deadline = time.monotonic() + job["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            result = {"returncode": os.waitstatus_to_exitcode(status)}
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            result = {"timeout": True}
            break
        time.sleep(0.02)
    reply.write(json.dumps(result) + "\n")
    reply.flush()
"""

#: variables read when FiftyOne is imported (the helper imported it once, with the worker's values): its config
#: (``FIFTYONE_*``) but not the package's own (``FIFTYONE_OOD_*``, read when used) nor ``FIFTYONE_CONTEXT``, which
#: FiftyOne sets itself when it first looks at where it runs
_FIXED_AT_IMPORT = ("PYTHONPATH", "OMP_NUM_THREADS")
_SET_BY_FIFTYONE = ("FIFTYONE_CONTEXT",)

_server = None
_server_env = {}
_lock = threading.Lock()


def _read_at_import(environ):
    return {k: v for k, v in environ.items() if k in _FIXED_AT_IMPORT or (
        k.startswith("FIFTYONE_") and not k.startswith("FIFTYONE_OOD_") and k not in _SET_BY_FIFTYONE)}


def _start():
    global _server, _server_env
    _server_env = _read_at_import(os.environ)
    _server = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, cwd=REPO)
    atexit.register(_stop, _server)


def _stop(server):
    if server.poll() is None:
        server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def run_python(script, *args, env=None, cwd=REPO, timeout=300):
    """Like ``subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, ...)``:
    a :class:`subprocess.CompletedProcess` whose ``returncode`` is negative when a signal ended the script.
    The script sees this process's environment now, with ``env`` on top."""
    env = dict(os.environ, **{k: str(v) for k, v in (env or {}).items()})
    with _lock, tempfile.TemporaryDirectory(prefix="ood-forked-") as tmp:
        if _server is None or _server.poll() is not None:
            _start()
        if _read_at_import(env) != _server_env:
            changed = sorted(set(_read_at_import(env).items()) ^ set(_server_env.items()))
            raise ValueError(f"run_python cannot change {sorted({k for k, _ in changed})} (read when FiftyOne is "
                             "imported): use subprocess.run")
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        job = dict(script=script, args=[str(a) for a in args], env=env, cwd=str(cwd), out=out, err=err,
                   timeout=timeout)
        _server.stdin.write(json.dumps(job) + "\n")
        _server.stdin.flush()
        line = _server.stdout.readline()
        if not line:
            raise RuntimeError("the forking helper process died")
        result = json.loads(line)
        if "error" in result:
            raise RuntimeError(result["error"])
        if result.get("timeout"):
            raise subprocess.TimeoutExpired([sys.executable, "-c", "<script>"], timeout)
        with open(out) as f_out, open(err) as f_err:
            return subprocess.CompletedProcess([sys.executable, "-c", script, *args], result["returncode"],
                                               f_out.read(), f_err.read())
