"""Progress bars that also log: a terminal sees tqdm's bar, a log (the Prefect UI's flow-run pane,
a CI log) sees a line every tenth of the way and one at the end."""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

log = logging.getLogger("skillmaster.progress")


class LoggedBar(tqdm):
    """``tqdm`` that logs ``<desc>: n/total <unit> (<postfix>)`` at each tenth of ``total`` and on
    close, to the ``skillmaster.progress`` logger (INFO), also when the bar itself is disabled."""

    def __init__(
        self,
        iterable=None,
        *,
        desc: str = "",
        total: float | None = None,
        unit: str = "it",
        log_every: float = 0.1,
        **kwargs,
    ):
        super().__init__(iterable, desc=desc, total=total, unit=unit, **kwargs)
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self._what = (desc.rstrip(": ") or "progress", total, unit)  # tqdm keeps none when disabled
        self._count = self._logged = kwargs.get("initial", 0)
        self._every = max(1, round((total or 0) * log_every))
        self._closed_once = False

    def update(self, n: float | None = 1):
        out = super().update(n)
        self._advance(n or 0)
        return out

    def __iter__(self):
        for item in super().__iter__():
            yield item  # the caller's loop body runs here; the item counts once it is done
            self._advance(1)

    def _advance(self, n: float) -> None:
        self._count += n
        if self._count - self._logged >= self._every:
            self._log()

    def _log(self) -> None:
        self._logged = self._count
        desc, total, unit = self._what
        postfix = f" ({self.postfix})" if getattr(self, "postfix", None) else ""
        log.info("%s: %g%s %s%s", desc, self._count, f"/{total:g}" if total else "", unit, postfix)

    def close(self) -> None:
        if not getattr(self, "_closed_once", True):
            self._closed_once = True
            if self._count != self._logged or self._count == 0:
                self._log()
        super().close()
