"""Stopping a run by signal: Ctrl-C (SIGINT) and SIGTERM (what Slurm, Kubernetes and ``kill``
send) end it the same way, after the last finished epoch is saved.

Without this, SIGTERM kills the process without a word, and a second Ctrl-C pressed while the
first one is handled (saving, printing the resume hint, exiting) breaks out of that with a
traceback. With `stop_on_signals`, the first signal stops the run where it is; every later
one is ignored for the rest of the process, which is on its way out.

"First" is the order they arrived in: Python runs the handlers of signals that arrived during
one stretch of C code (torch.save's writer, an fsync, a kernel) lowest number first, SIGINT
before SIGTERM whatever their order, so the arrival order is read from the wakeup fd, which
gets each signal's number as it arrives.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator

from .._common import launched

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A run stopped by a signal. A KeyboardInterrupt, so a plain Ctrl-C (Python's default
    handler) and this take one path through the run."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_of(interrupt: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: its own, or SIGINT for Python's plain Ctrl-C."""
    return getattr(interrupt, "signum", signal.SIGINT)


def stop_reason(signum: int) -> str:
    """Why a process stopped, for a person: the signal's name, and under torchrun what a
    SIGTERM means (another rank failed: torchrun stops the rest)."""
    why = signal.Signals(signum).name
    if launched() and signum == signal.SIGTERM:
        why += ": torchrun stops every rank when one fails, and the failing rank names the cause"
    return why


def _in_main_thread() -> bool:
    # Signal handlers can only be set from the main thread.
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _arrivals() -> Iterator[Callable[[], int | None]]:
    """While active, a function that says which of SIGINT and SIGTERM arrived first (None:
    neither) since it was last asked."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def first() -> int | None:
        with contextlib.suppress(BlockingIOError):
            return next((n for n in reader.recv(4096) if n in STOP_SIGNALS), None)
        return None

    try:
        yield first
    finally:
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()


def _ignore(signum, frame) -> None:
    """Ignored, in Python: a signal that arrived with the first still waits for its handler,
    and with SIG_IGN Python would print "Signal 15 ignored due to race condition"."""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While active, SIGINT and SIGTERM raise `Stopped`; from the first on, both are ignored
    for the rest of the process. Not stopped, the previous handlers come back at the end."""
    if not _in_main_thread():
        yield
        return
    with _arrivals() as first_arrived:

        def stop(signum, frame):
            for each in STOP_SIGNALS:
                signal.signal(each, _ignore)
            raise Stopped(first_arrived() or signum)

        previous = {each: signal.signal(each, stop) for each in STOP_SIGNALS}
        try:
            yield
        finally:
            for each, handler in previous.items():
                if signal.getsignal(each) is stop:
                    signal.signal(each, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the duration (a save), then deliver the first one to
    whatever handles it outside."""
    if not _in_main_thread():
        yield
        return
    received: list[int] = []
    with _arrivals() as first_arrived:
        previous = {
            each: signal.signal(each, lambda signum, frame: received.append(signum))
            for each in STOP_SIGNALS
        }
        try:
            yield
        finally:
            for each, handler in previous.items():
                signal.signal(each, handler)
        first = (first_arrived() or received[0]) if received else None
    if first:
        signal.raise_signal(first)
