"""Which signal stops a run: the first one that arrived, however closely another follows it."""

from __future__ import annotations

import signal
import threading

import pytest

from cnnshape.train import signals

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_sigmask"), reason="needs POSIX signal masks"
)
TERM, INT = signal.SIGTERM, signal.SIGINT


def arrive_together(*signums: int) -> None:
    """The signals arrive in this order while Python cannot run their handlers, as during
    the C code of a save (torch.save's writer, an fsync): the C-level handler sees each as
    it comes, and Python runs the Python handlers afterwards, lowest signal number first.

    The main thread blocks them while another thread sends them to itself, so each reaches
    the C-level handler at once, in order; Python runs its handlers in the main thread."""
    go = threading.Event()

    def send() -> None:
        go.wait()
        for signum in signums:
            signal.pthread_kill(threading.get_ident(), signum)

    sender = threading.Thread(target=send)
    sender.start()  # before the main thread blocks them: the sender keeps them unblocked
    signal.pthread_sigmask(signal.SIG_BLOCK, signals.STOP_SIGNALS)
    try:
        go.set()
        sender.join()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals.STOP_SIGNALS)


# The second signal's handler still runs after the first stopped the run: quietly.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("order", [(TERM, INT), (INT, TERM)])
def test_the_first_signal_stops_a_run(order):
    with pytest.raises(signals.Stopped) as stopped, signals.stop_on_signals():
        arrive_together(*order)
    assert stopped.value.signum == order[0]


@pytest.mark.parametrize("order", [(TERM, INT), (INT, TERM)])
def test_the_first_signal_during_a_save_stops_the_run_after_it(order):
    saved = False
    with pytest.raises(signals.Stopped) as stopped, signals.stop_on_signals():
        with signals.deferred():
            arrive_together(*order)
            saved = True
    assert saved and stopped.value.signum == order[0]
