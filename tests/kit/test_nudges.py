"""Coalesced requests for a task (kit/nudges.py): a burst costs a few enqueues, none while paused."""

import threading
import time

from tertulia.kit.nudges import Nudger


class Counting:
    def __init__(self) -> None:
        self.enqueued = 0
        self.scheduled: list[float] = []
        self.lock = threading.Lock()

    def enqueue(self) -> None:
        with self.lock:
            self.enqueued += 1

    def schedule(self, delay: float) -> None:
        self.scheduled.append(delay)


def test_a_burst_is_one_enqueue_and_one_trailing_one() -> None:
    counting = Counting()
    nudger = Nudger("t", counting.enqueue, counting.schedule, every_seconds=0.05)
    for _ in range(100):
        nudger.nudge()
    assert counting.enqueued == 1
    time.sleep(0.2)
    assert counting.enqueued == 2  # the trailing one, for the nudges in between


def test_nothing_is_asked_for_while_paused_and_a_waiting_trailing_run_is_dropped() -> None:
    counting = Counting()
    nudger = Nudger("t", counting.enqueue, counting.schedule, every_seconds=0.05)
    nudger.nudge()
    nudger.nudge()  # a trailing run now waits on its timer
    with nudger.paused():
        time.sleep(0.2)
        nudger.nudge()
        nudger.follow_up(1.0)
        assert counting.enqueued == 1
        assert counting.scheduled == []
    nudger.nudge()
    nudger.follow_up(1.0)
    assert counting.enqueued == 2
    assert counting.scheduled == [1.0]
