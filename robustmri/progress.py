"""Progress display: a tqdm bar on a terminal, plain log lines elsewhere (CI logs, pipes).

tqdm's ``disable=None`` hides the bar when stderr is not a terminal, which leaves a long CI job
silent for minutes. :func:`progress_bar` keeps the bar on a terminal and otherwise prints one line
per tenth of the work (and at the end) to stderr: ``train pix2pix: 150/300 (50%) 12.3 s, 12.2 step/s``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["LineProgress", "progress_bar"]


class LineProgress:
    """A tqdm-compatible subset (``update``, ``set_postfix``, ``set_postfix_str``, ``close``,
    iteration) that logs a line at every ``every`` fraction of ``total`` to ``stream``."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        every: float | None = 0.1,
        stream: Any = None,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.desc, self.unit = desc, unit
        self.n = self.start_n = initial
        self.stream = stream if stream is not None else sys.stderr
        self.postfix = ""
        self.t0 = time.perf_counter()
        self.step = max(1, int(round(total * every))) if total and every else None
        self.next_log = initial + self.step if self.step else None
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None, "LineProgress was built without an iterable"
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def set_postfix(self, values: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        merged = {**(values or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in merged.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.next_log is not None and self.n >= self.next_log and (self.total is None or self.n < self.total):
            self._log()
            while self.next_log <= self.n:
                self.next_log += self.step  # type: ignore[operator]

    def close(self) -> None:
        if not self.closed and self.step is not None and self.n > self.start_n:
            self._log()
        self.closed = True

    def _log(self) -> None:
        elapsed = time.perf_counter() - self.t0
        done = self.n - self.start_n
        rate = f", {done / elapsed:.3g} {self.unit}/s" if elapsed > 0 and done else ""
        count = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        tail = f"  [{self.postfix}]" if self.postfix else ""
        print(f"{self.desc}: {count} {elapsed:.1f} s{rate}{tail}", file=self.stream, flush=True)


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
) -> Any:
    """A progress display over ``iterable`` or ``total`` units: tqdm on a terminal, :class:`LineProgress`
    otherwise, and a silent pass-through when ``enabled`` is false."""
    if not enabled:
        return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, every=None)
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)

