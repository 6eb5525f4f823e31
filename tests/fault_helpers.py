"""Faults injected into FiftyOne's database-changing calls, shared by the crash-consistency tests."""

import contextlib
import os
import re
import threading
import time

import fiftyone.core.collections as foc
import fiftyone.core.dataset as fod

#: the database-changing calls of a run's commit (records, fields) and of the tag and saved-view changes of flags
#: runs and audits, where the crash tests of runs, flags and audits inject faults
RUN_TAG_VIEW_STEPS = (
    (fod.Dataset, "rename_sample_field"),
    (fod.Dataset, "rename_run"),
    (foc.SampleCollection, "register_run"),
    (foc.SampleCollection, "save_run_results"),
    (fod.Dataset, "update_run_config"),
    (fod.Dataset, "delete_sample_field"),
    (fod.Dataset, "delete_run"),
    (foc.SampleCollection, "untag_samples"),
    (fod.Dataset, "delete_saved_view"),
    (foc.SampleCollection, "tag_samples"),
    (fod.Dataset, "save_view"),
)


class Crash(Exception):
    """The fault raised inside a database-changing call."""


def crash(name):
    raise Crash(name)


class FaultAt:
    """Run ``action(name)`` (default: raise :class:`Crash`) inside the ``n``-th call (1-based) of any of
    ``steps`` (``(owner class, method name)`` pairs, patched with ``monkeypatch``), counting from the start, or,
    with ``armed=False``, from when :attr:`armed` is set."""

    def __init__(self, monkeypatch, n, steps, action=crash, armed=True):
        self.n, self.calls, self.armed, self.action = n, [], armed, action
        for owner, name in steps:
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name), name))

    def _wrap(self, original, name):
        def wrapper(*args, **kwargs):
            if self.armed:
                self.calls.append(name)
                if len(self.calls) == self.n:
                    self.action(name)
            return original(*args, **kwargs)

        return wrapper

    @property
    def reached(self):
        """Whether the ``n``-th call happened (a larger ``n`` than the calls made means no fault)."""
        return len(self.calls) >= self.n


def fault_after_report(monkeypatch, n, steps):
    """Fail the ``n``-th of ``steps`` made after an audit wrote its report (its record's commit and what follows)."""
    import ood_core.fo.audit as audit_module

    fault = FaultAt(monkeypatch, n, steps, armed=False)
    report = audit_module.write_report

    def arm(*args, **kwargs):
        report(*args, **kwargs)
        fault.armed = True

    monkeypatch.setattr(audit_module, "write_report", arm)
    return fault


def run_faulted(monkeypatch, n, steps, call, killed=False, after_report=False):
    """``(fault, failed)``: ``call()`` with a :class:`Crash` in the ``n``-th of ``steps`` (``after_report``: counted
    from an audit's report on, :func:`fault_after_report`); ``killed``: as a process that dies there, its
    in-process undo skipped (the next call's repair reads the journal)."""
    from ood_core.fo import commit

    with monkeypatch.context() as m:
        fault = fault_after_report(m, n, steps) if after_report else FaultAt(m, n, steps)
        if killed:
            m.setattr(commit, "_roll_back", lambda dataset, entry: None)
        try:
            call()
        except Crash:
            return fault, True
    return fault, False


_KILLED_CHILD = """
import os, signal, sys
import fiftyone as fo
import ood_core as ood
sys.path.insert(0, os.path.join({repo!r}, "tests"))
from {module} import STEPS

calls = []
kill_at = int(sys.argv[2])

def wrap(original):
    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return wrapper

for owner, name in STEPS:
    setattr(owner, name, wrap(getattr(owner, name)))
ds = fo.load_dataset(sys.argv[1])
{call}
print("done", len(calls), flush=True)
"""


def kill_9_at(dataset_name, n, steps_module, call):
    """Run ``call`` (a Python statement on ``ds`` and ``ood``) in a separate process that is killed with SIGKILL
    inside its ``n``-th call of the test module ``steps_module``'s ``STEPS``; locks it held expire after 1 s.
    Returns the finished process (``returncode`` 0 and stdout ``done ...`` when it got through)."""
    from forked_python import REPO, run_python

    script = _KILLED_CHILD.format(repo=REPO, module=steps_module, call=call)
    return run_python(script, dataset_name, n, env={"FIFTYONE_OOD_LOCK_LEASE": "1"})


def in_another_process(ds, code):
    """Run ``code`` in a fresh Python process (the same database: the tests' mongod) with ``ds`` loaded from the
    database as ``ds`` (and ``fo``, ``ood``, ``fo_runs`` imported); its stdout. Fails the test when it fails."""
    from forked_python import REPO, run_python

    ds.persistent = True  # (a non-persistent dataset may be cleaned up by the other process's FiftyOne)
    script = ("import sys; sys.path.insert(0, %r)\nimport fiftyone as fo, ood_core as ood\n"
              "from ood_core.fo import runs as fo_runs\nds = fo.load_dataset(%r)\n" % (REPO, ds.name)) + code
    out = run_python(script)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def published_leftovers(folder, name):
    """The names publishing gives next to ``name`` in ``folder`` (``<name>.old-<hex>``, ``.<name>.tmp-*``), found
    here by their pattern, independently of the package's own search."""
    pattern = re.escape(name) + r"\.old-[0-9a-f]{12}|\." + re.escape(name) + r"\.tmp-[a-z0-9_]+"
    return sorted(n for n in os.listdir(folder) if re.fullmatch(pattern, n))


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


@contextlib.contextmanager
def held_elsewhere(lock, seconds):
    """Run the body while another thread holds ``lock`` (a lock context manager) for ``seconds``, as a call of
    another process would; yields a dict whose ``"at"`` is the time that thread let go."""
    held, released = threading.Event(), {}

    def hold():
        with lock:
            held.set()
            time.sleep(seconds)
            released["at"] = time.time()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        yield released
    finally:
        holder.join()
