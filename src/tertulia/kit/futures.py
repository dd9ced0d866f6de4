"""Answering callers that wait on event loops from a worker thread.

Threads that work for coroutines (the callback writer, the rate limiter's sender) answer a batch of
them with `answer_from_thread`: one wake-up of each event loop for all of its answers, where a
`call_soon_threadsafe` per answer costs a write to the loop's self-pipe and a wake-up each.
"""

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

# A waiting caller's future and its answer: a result, or an exception to raise in the caller.
Answer = tuple["asyncio.Future[Any]", Any]


def answer_from_thread(answers: Iterable[Answer]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
    for future, answer in answers:
        by_loop.setdefault(future.get_loop(), []).append((future, answer))
    for loop, waiting in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting
            loop.call_soon_threadsafe(_apply, waiting)


def _apply(answers: list[Answer]) -> None:
    for future, answer in answers:
        if future.done():  # the caller was cancelled meanwhile
            continue
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)
