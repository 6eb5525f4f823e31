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
