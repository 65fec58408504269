"""Progress of a scan pass: a tqdm bar on a terminal, log lines otherwise."""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.logger import Logger

log = Logger(namespace="sisock_plugins.g3.scanner")


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _duration(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class LogProgress:
    """Logs ``scanned i/n files (x of y MB), about T left`` every ``every`` seconds.

    Passes with fewer than ``min_files`` files log nothing (the watchdog's
    one-file passes would otherwise be noisy).
    """

    def __init__(self, files: int, nbytes: int, *, every: float = 10.0, min_files: int = 2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.files, self.nbytes = files, nbytes
        self.done_files = 0
        self.done_bytes = 0
        self.every = every
        self.clock = clock
        self.started = clock()
        self.last = self.started
        self.quiet = files < min_files
        if not self.quiet:
            log.info("scanning {files} files ({size})", files=files, size=_mb(nbytes))

    def line(self) -> str:
        elapsed = self.clock() - self.started
        rate = self.done_bytes / elapsed if elapsed > 0 else 0.0
        left = (self.nbytes - self.done_bytes) / rate if rate > 0 else None
        eta = f", about {_duration(left)} left" if left is not None else ""
        return (f"scanned {self.done_files}/{self.files} files ({_mb(self.done_bytes)} of "
                f"{_mb(self.nbytes)}, {_mb(rate)}/s){eta}")

    def update(self, files: int, nbytes: int) -> None:
        self.done_files += files
        self.done_bytes += nbytes
        now = self.clock()
        if not self.quiet and now - self.last >= self.every:
            self.last = now
            log.info("{progress}", progress=self.line())

    def close(self) -> None:
        pass


class TqdmProgress:
    """A terminal progress bar: bytes with rate and ETA, files in the postfix."""

    def __init__(self, files: int, nbytes: int, stream: Any = None) -> None:
        import shutil

        from tqdm import tqdm

        self.files = files
        self.done_files = 0
        # a terminal reporting a 0x0 size would hide the bar
        size = shutil.get_terminal_size((100, 24))
        self.bar = tqdm(total=nbytes, unit="B", unit_scale=True, unit_divisor=1000, desc="scanning",
                        file=stream, ncols=size.columns or 100, nrows=size.lines or 24, leave=True)
        self.bar.set_postfix_str(f"0/{files} files", refresh=False)

    def update(self, files: int, nbytes: int) -> None:
        self.done_files += files
        self.bar.set_postfix_str(f"{self.done_files}/{self.files} files", refresh=False)
        self.bar.update(nbytes)

    def close(self) -> None:
        self.bar.close()


def progress_factory(tty: bool) -> Callable[[int, int], Any]:
    """Bars on a terminal, log lines otherwise."""
    if tty:
        return lambda files, nbytes: TqdmProgress(files, nbytes)
    return lambda files, nbytes: LogProgress(files, nbytes)
