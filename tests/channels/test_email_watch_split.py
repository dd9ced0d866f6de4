"""How the watcher processes split the email channels' mailboxes (channels/email_watch.py
`mailboxes_to_hold`): whatever the start, the split ends with every process within one mailbox of
every other, and then nothing moves. The real claim and release path is tested against Dovecot in
test_email_watchers.py."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tertulia.channels.email_watch import mailboxes_to_hold

ROUNDS = 8  # the model below ended within 6 rounds at worst over 100,000 random starts


def test_what_a_process_holds() -> None:
    """The answer is what to hold: more is taken only if free, less is given back."""
    # Alone: all of them.
    assert mailboxes_to_hold(3, 3, [], 0) == 3
    assert mailboxes_to_hold(3, 0, [], 3) == 3
    # 3 and 0: the first gives one back, the second takes it (up to 2, but only one is free); at 2
    # and 1 nobody gives.
    assert mailboxes_to_hold(3, 3, [0], 0) == 2
    assert mailboxes_to_hold(3, 0, [2], 1) == 2
    assert mailboxes_to_hold(3, 2, [1], 0) == 2
    assert mailboxes_to_hold(3, 1, [2], 0) >= 1
    # 4 and 1 become 3 and 2.
    assert mailboxes_to_hold(5, 4, [1], 0) == 3
    assert mailboxes_to_hold(5, 1, [3], 1) == 3
    # 2, 2 and 0: one of the two (or both at once) gives one back.
    assert mailboxes_to_hold(4, 2, [2, 0], 0) == 1
    # Nothing is given while a mailbox is on its way to someone (it would be given twice).
    assert mailboxes_to_hold(3, 2, [0], 1) == 2
    # At the start everyone takes up to the share rounded down, and one more only once nobody
    # else is below that.
    assert mailboxes_to_hold(4, 0, [0, 0], 4) == 1
    assert mailboxes_to_hold(4, 1, [0, 2], 1) == 1
    assert mailboxes_to_hold(4, 1, [1, 1], 1) == 2
    # A process holding more than its share keeps it while the others are within one of it (a
    # mailbox it took because nobody else could).
    assert mailboxes_to_hold(4, 3, [2], 0) == 3


def _round(mailboxes: int, loads: list[int], rng: random.Random, together: bool) -> int:
    """Each process looks once, in a random order, and gives back or takes what `mailboxes_to_hold`
    says; how many mailboxes moved. What a process gives back is on its way until the next round
    (its watcher stopping): the others still see it as the giver's, and nobody can take it yet.
    `together`: every process decides on what the first one saw (all look at the same moment)."""
    first_look = list(loads)
    on_the_way = [0] * len(loads)
    nobodys = mailboxes - sum(loads)
    moved = 0
    for process in rng.sample(range(len(loads)), len(loads)):
        recorded = first_look if together else [held + going for held, going in zip(loads, on_the_way, strict=True)]
        held = first_look[process] if together else loads[process]
        others = recorded[:process] + recorded[process + 1 :]
        free = mailboxes - sum(recorded) + on_the_way[process]
        hold = mailboxes_to_hold(mailboxes, held, others, free)
        if hold < held:
            assert held >= min(others) + 2, (mailboxes, held, others, free)  # gives only to a process 2 below
            on_the_way[process] += held - hold
            loads[process] -= held - hold
            moved += held - hold
        elif hold > held:
            taken = min(hold - held, nobodys)
            nobodys -= taken
            loads[process] += taken
            moved += taken
    return moved


@st.composite
def _starts(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A number of mailboxes, and how many each live process holds (some may be held by none)."""
    processes = draw(st.integers(1, 7))
    mailboxes = draw(st.integers(0, 30))
    holders = draw(st.lists(st.integers(-1, processes - 1), min_size=mailboxes, max_size=mailboxes))
    return mailboxes, [holders.count(process) for process in range(processes)]


def _even(mailboxes: int, loads: list[int]) -> bool:
    return sum(loads) == mailboxes and max(loads) - min(loads) <= 1


@settings(max_examples=60, deadline=None)
@given(start=_starts(), seed=st.integers(0, 2**32), together=st.booleans())
def test_the_split_ends_most_even_and_then_nothing_moves(
    start: tuple[int, list[int]], seed: int, together: bool
) -> None:
    mailboxes, loads = start
    rng = random.Random(seed)
    for _ in range(ROUNDS):
        if _even(mailboxes, loads):
            break
        _round(mailboxes, loads, rng, together)
    assert _even(mailboxes, loads), (mailboxes, loads)
    settled = list(loads)
    for _ in range(3):
        assert _round(mailboxes, loads, rng, together) == 0
    assert loads == settled
