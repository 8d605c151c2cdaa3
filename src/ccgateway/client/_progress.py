"""A small progress bar for downloads: one line with percent, size, speed and ETA.

It is a :data:`Progress` callback (``bar(done, total)``) for one file, or hands out one callback
per file with :meth:`TerminalProgress.file` and shows their sum. On a terminal it redraws one line
(``\\r``) at most ten times a second; on anything else it prints a line a second, so a log stays
readable.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import TextIO

from ccgateway.client._download import Progress

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_WINDOW = 5.0


def format_size(n: float) -> str:
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_eta(seconds: float) -> str:
    total = int(seconds + 0.5)
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TerminalProgress:
    """A progress line on ``stream`` (see the module notes)."""

    format_size = staticmethod(format_size)

    def __init__(
        self,
        stream: TextIO,
        *,
        label: str = "",
        interactive: bool | None = None,
        width: int = 24,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._label = label
        self._interactive = stream.isatty() if interactive is None else interactive
        self._width = width
        self._clock = clock
        self._files: dict[Hashable, tuple[int, int | None]] = {}
        self._samples: deque[tuple[float, int]] = deque()
        self._last_draw = float("-inf")
        self._last_length = 0
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        self._update(None, done, total)

    def file(self, key: Hashable) -> Progress:
        """A callback for one of several files; the line shows their sum."""
        return lambda done, total: self._update(key, done, total)

    def _update(self, key: Hashable, done: int, total: int | None) -> None:
        self._files[key] = (done, total)
        now, overall = self._clock(), self._done()
        if self._samples and overall < self._samples[-1][1]:
            self._samples.clear()  # a restart: the speed so far says nothing
        self._samples.append((now, overall))
        while len(self._samples) > 2 and now - self._samples[0][0] > _WINDOW:
            self._samples.popleft()
        if now - self._last_draw >= (0.1 if self._interactive else 1.0):
            self._draw(now)

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self._files:
            self._draw(self._clock())
            if self._interactive:
                self._stream.write("\n")
                self._stream.flush()

    def _done(self) -> int:
        return sum(done for done, _ in self._files.values())

    def _total(self) -> int | None:
        totals = [total for _, total in self._files.values()]
        return None if any(t is None for t in totals) else sum(t for t in totals if t is not None)

    def _speed(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None

    def line(self) -> str:
        done, total, speed = self._done(), self._total(), self._speed()
        parts = [self._label] if self._label else []
        if total:
            fraction = min(done / total, 1.0)
            filled = int(fraction * self._width)
            arrow = ">" if filled < self._width else ""
            bar = ("=" * filled + arrow).ljust(self._width)
            parts.append(f"{int(fraction * 100):3d}% [{bar}]")
            parts.append(f"{format_size(done)} / {format_size(total)}")
        else:
            parts.append(format_size(done))
        if speed is not None:
            parts.append(f"{format_size(speed)}/s")
            if total and speed > 0 and done < total:
                parts.append(f"ETA {format_eta((total - done) / speed)}")
        return "  ".join(parts)

    def log_handler(self, fmt: str = "%(levelname)s %(message)s") -> logging.Handler:
        """A handler writing log lines to the bar's stream without tearing the bar."""
        return _BarHandler(self, fmt)

    def clear(self) -> None:
        """Blank the bar's line (it comes back with the next update)."""
        if self._interactive and self._last_length:
            self._stream.write("\r" + " " * self._last_length + "\r")
            self._last_length = 0
            self._last_draw = float("-inf")

    def _draw(self, now: float) -> None:
        self._last_draw = now
        text = self.line()
        if self._interactive:
            pad = " " * max(self._last_length - len(text), 0)
            self._stream.write(f"\r{text}{pad}")
            self._last_length = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()


class _BarHandler(logging.Handler):
    def __init__(self, bar: TerminalProgress, fmt: str) -> None:
        super().__init__()
        self._bar = bar
        self.setFormatter(logging.Formatter(fmt))

    def emit(self, record: logging.LogRecord) -> None:
        self._bar.clear()
        self._bar._stream.write(self.format(record) + "\n")
        self._bar._stream.flush()
