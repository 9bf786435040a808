"""Guards that turn a hang into a failure."""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def no_hang(seconds: int = 20):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``, e.g.
    when a regression opens a FIFO. Main thread only (SIGALRM)."""
    def expired(*_):
        raise TimeoutError(f"still blocked after {seconds} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
