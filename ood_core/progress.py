"""One progress convention for long loops, usable with or without FiftyOne.

``progress`` arguments across the package accept:

- ``None`` or ``True``: a tqdm bar on stderr;
- ``False``: silent;
- a callable ``f(done, total)``: called after each batch (operators pass one
  that forwards to ``ctx.set_progress``).
"""

import contextlib


def check_progress(progress):
    """Refuse what is not a progress setting: None or True (a bar on stderr), False (silent), ``f(done, total)``."""
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        from .errors import OODInputError

        raise OODInputError(f"progress={progress!r} is not a progress setting; pass None or True (a bar on "
                            "stderr), False (silent) or a callable f(done, total)")


def inner_progress(progress):
    """What a call passes to the calls it makes: their own bars under a bar (None / True), else silence (a
    callable is told of the outer call's steps only)."""
    return progress if progress is None or progress is True else False


class Progress:
    def __init__(self, progress, total, desc, unit="img"):
        check_progress(progress)
        self.total = int(total)
        self.done = 0
        self._callback = progress if callable(progress) else None
        self._bar = None
        if progress is None or progress is True:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, leave=False)

    def update(self, n):
        if int(n) <= 0:  # nothing done: no call (a callback sees ``done`` strictly increase)
            return
        self.done += int(n)
        if self._bar is not None:
            self._bar.update(n)
        if self._callback is not None:
            self._callback(self.done, self.total)

    def extend(self, n):
        """Add ``n`` to the total (work whose size is known only once it starts)."""
        self.total += int(n)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def close(self):
        if self._bar is not None:
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class DetectorSteps:
    """Progress of scoring with a detector (``ood_core.fo.scores.score_arrays``): fitting, the detector's own steps
    while it scores (``progress_callback``, at most ``progress_units()``), scoring done. ``progress``: a
    :class:`Progress` whose total counts them, or None."""

    def __init__(self, progress, det):
        self.progress, self.det, self.reported = progress, det, 0
        self.units = det.progress_units() if progress is not None else 0

    def fitted(self):
        if self.progress is not None:
            self.progress.update(1)

    @contextlib.contextmanager
    def detector_reports(self):
        if self.progress is None:
            yield
            return

        def report(n):
            n = min(int(n), self.units - self.reported)  # never past the steps announced
            self.reported += n
            self.progress.update(n)

        self.det.progress_callback = report
        try:
            yield
        finally:
            self.det.progress_callback = None

    def scored(self):
        if self.progress is not None:  # the detector's steps it did not need (no ratio: too few scored samples)
            self.progress.update(self.units - self.reported + 1)
