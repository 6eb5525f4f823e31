"""One progress convention for long loops, usable with or without FiftyOne.

``progress`` arguments across the package accept:

- ``None`` or ``True``: a tqdm bar on stderr;
- ``False``: silent;
- a callable ``f(done, total)``: called after each batch (operators pass one
  that forwards to ``ctx.set_progress``).
"""


class Progress:
    def __init__(self, progress, total, desc):
        self.total = int(total)
        self.done = 0
        self._callback = progress if callable(progress) else None
        self._bar = None
        if progress is None or progress is True:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit="img", leave=False)

    def update(self, n):
        self.done += int(n)
        if self._bar is not None:
            self._bar.update(n)
        if self._callback is not None:
            self._callback(self.done, self.total)

    def close(self):
        if self._bar is not None:
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
