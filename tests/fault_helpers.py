"""Faults injected into FiftyOne's database-changing calls, shared by the crash-consistency tests."""


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


def run_faulted(monkeypatch, n, steps, call, killed=False):
    """``(fault, failed)``: ``call()`` with a :class:`Crash` in the ``n``-th of ``steps``; ``killed``: as a process
    that dies there, its in-process undo skipped (the next call's repair reads the journal)."""
    from ood_core.fo import commit

    with monkeypatch.context() as m:
        fault = FaultAt(m, n, steps)
        if killed:
            m.setattr(commit, "_roll_back", lambda dataset, entry: None)
        try:
            call()
        except Crash:
            return fault, True
    return fault, False
