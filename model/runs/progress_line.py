"""A progress line with an ETA for output that is not a terminal (a log file, a pipe).

On a terminal the training loop shows a tqdm bar. Redirected to a file, a bar's carriage returns
make an unreadable log, so tqdm is turned off there; :class:`ProgressLine` takes its place with
the same three methods (``update``, ``set_postfix``, ``close``) and prints one plain line on
stderr at most every :data:`INTERVAL` seconds (and at the end), e.g.::

    mnist1d-3f2a  step 240/600 (40%)  2.1 steps/s  elapsed 1:54  ETA 2:51  loss=3.1172 epoch=15

For long work without steps (an evaluation, an analysis) :class:`Heartbeat` prints a line with
the elapsed time (and an ETA when it counts finished parts) at the same interval.

The rate is measured since the line's start (steps done in this process), so a resumed run's
ETA is not skewed by the steps before the resume.
"""

from __future__ import annotations

import sys
import threading
import time

INTERVAL = 25.0  # seconds between lines: with one step's time on top, gaps stay under 30 s


def clock(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``."""
    s = int(round(max(seconds, 0)))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class ProgressLine:
    def __init__(
        self,
        total: int,
        initial: int = 0,
        desc: str = "",
        stream=None,
        interval: float = INTERVAL,
        timer=time.monotonic,
    ):
        self.total, self.n, self.desc = int(total), int(initial), desc
        self.stream, self.interval, self.timer = stream, interval, timer
        self.start_n, self.start = self.n, timer()
        self.last, self.postfix = self.start, ""

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.timer() - self.last >= self.interval:
            self.emit()

    def set_postfix(self, **values) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def line(self) -> str:
        now = self.timer()
        elapsed, done = now - self.start, self.n - self.start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = clock((self.total - self.n) / rate) if rate > 0 else "?"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        return (
            f"{self.desc}  step {self.n}/{self.total}{share}  {rate:.2f} steps/s  elapsed {clock(elapsed)}  "
            f"ETA {eta}  {self.postfix}"
        ).rstrip()

    def emit(self) -> None:
        print(self.line(), file=self.stream or sys.stderr, flush=True)
        self.last = self.timer()

    def close(self) -> None:
        if self.n > self.start_n:
            self.emit()


class Heartbeat:
    """While long work without steps runs (an evaluation, an analysis), a line every ``interval`` seconds
    on a stream that is not a terminal, so a log shows the process is alive and, given ``done``/``total``
    (e.g. runs analysed), an ETA. On a terminal it prints nothing. Use as a context manager."""

    def __init__(self, desc: str, total: int = 0, stream=None, interval: float = INTERVAL, timer=time.monotonic):
        self.desc, self.total, self.done = desc, int(total), 0
        self.stream, self.interval, self.timer = stream, interval, timer
        self.start = timer()
        self._stop = threading.Event()
        self._thread = None

    def line(self) -> str:
        elapsed = self.timer() - self.start
        part = ""
        if self.total:
            eta = clock(elapsed / self.done * (self.total - self.done)) if self.done else "?"
            part = f"  {self.done}/{self.total} done  ETA {eta}"
        return f"{self.desc}: working, elapsed {clock(elapsed)}{part}"

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            print(self.line(), file=self.stream or sys.stderr, flush=True)

    def __enter__(self) -> Heartbeat:
        stream = self.stream or sys.stderr
        if not (hasattr(stream, "isatty") and stream.isatty()):
            self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
