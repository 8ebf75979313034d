"""A worker's memory budget: large requests share it (waiting briefly), small ones never wait, none exceeds it."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.budget import MemoryBudget
from receiver.errors import TooLarge, Unavailable
from tests.helpers import wait_until

MiB = 1024 * 1024


def test_small_requests_pass_even_when_the_pool_is_full():
    budget = MemoryBudget(4 * MiB, small_bytes=MiB)
    with budget.hold() as big:
        big.need(4 * MiB)
        for _ in range(100):
            with budget.hold() as small:
                small.need(MiB)
                assert small.reserved_bytes == 0
        assert budget.used_bytes == 4 * MiB


def test_a_large_request_that_does_not_fit_beside_others_gets_503_after_a_short_wait():
    budget = MemoryBudget(4 * MiB, small_bytes=MiB, wait_seconds=0.01)
    with budget.hold() as first:
        first.need(3 * MiB)
        second = budget.hold()
        with pytest.raises(Unavailable) as busy:
            second.need(2 * MiB)
        assert busy.value.status == 503 and busy.value.headers()["Retry-After"] == "1"
        assert busy.value.details["written"] == "none" and "large requests" in busy.value.message
        assert second.reserved_bytes == 0 and budget.used_bytes == 3 * MiB
    with budget.hold() as third:
        third.need(4 * MiB)


def in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_large_requests_take_turns_to_estimate_and_a_waiting_one_holds_nothing():
    budget = MemoryBudget(8 * MiB, small_bytes=MiB, wait_seconds=60)
    first = budget.hold()
    first.need(2 * MiB)  # estimating: has the turn
    got: list[int] = []

    def second() -> None:
        with budget.hold() as hold:
            hold.need(2 * MiB)
            got.append(hold.reserved_bytes)

    waiter = in_thread(second)
    wait_until(lambda: budget._waiters == 1)
    assert budget.used_bytes == 2 * MiB, "the waiting request holds nothing while it waits"
    first.estimated()  # the turn passes on; first keeps its memory
    waiter.join(30)
    assert got == [2 * MiB] and budget.used_bytes == 2 * MiB
    first.release()
    assert budget.used_bytes == 0


def test_the_estimating_request_waits_for_memory_that_others_give_back():
    budget = MemoryBudget(4 * MiB, small_bytes=MiB, wait_seconds=60)
    done = budget.hold()
    done.need(3 * MiB)
    done.estimated()
    got: list[int] = []

    def estimating() -> None:
        with budget.hold() as hold:
            hold.need(2 * MiB)  # has the turn; waits for memory
            got.append(hold.reserved_bytes)

    waiter = in_thread(estimating)
    wait_until(lambda: budget._turn.locked())
    done.release()
    waiter.join(30)
    assert got == [2 * MiB] and budget.used_bytes == 0


def test_after_its_estimate_a_request_never_waits():
    budget = MemoryBudget(4 * MiB, small_bytes=MiB // 2, wait_seconds=60)
    with budget.hold() as first:
        first.need(3 * MiB)
        first.estimated()
        with budget.hold() as other:
            other.need(MiB)  # has the turn and the rest of the pool
            with pytest.raises(Unavailable):  # would hang for 60 s if it waited
                first.need(3 * MiB + 1)
    assert budget.used_bytes == 0 and not budget._turn.locked()


def test_beyond_max_waiters_a_request_is_refused_at_once():
    budget = MemoryBudget(4 * MiB, small_bytes=MiB, max_waiters=1, wait_seconds=60)
    first = budget.hold()
    first.need(3 * MiB)
    waiter = in_thread(lambda: budget.hold().need(2 * MiB))  # waits for the turn (for up to 60 s)
    wait_until(lambda: budget._waiters == 1)
    with pytest.raises(Unavailable):  # would hang for 60 s if it waited too
        budget.hold().need(2 * MiB)
    first.release()
    waiter.join(30)
    assert not waiter.is_alive()


def test_a_request_larger_than_the_pool_is_413_naming_the_setting():
    budget = MemoryBudget(4 * MiB, small_bytes=MiB)
    with pytest.raises(TooLarge) as refused:
        budget.hold().need(4 * MiB + 1)
    assert "--max-parse-bytes" in refused.value.message
    assert refused.value.details == {"needed_bytes": 4 * MiB + 1, "max_parse_bytes": 4 * MiB}
    assert budget.used_bytes == 0


def test_needs_only_grow_and_everything_is_given_back_on_error():
    budget = MemoryBudget(8 * MiB, small_bytes=MiB)
    with pytest.raises(RuntimeError), budget.hold() as hold:
        hold.need(512 * 1024)
        assert budget.used_bytes == 0
        hold.need(2 * MiB)
        hold.need(MiB)  # less than before: nothing changes
        assert hold.reserved_bytes == 2 * MiB
        hold.need(3 * MiB)
        assert budget.used_bytes == 3 * MiB
        raise RuntimeError("the request failed")
    assert budget.used_bytes == 0


@given(st.lists(st.lists(st.integers(0, 6 * MiB), min_size=1, max_size=5), min_size=1, max_size=16))
def test_concurrent_holds_never_add_up_past_the_pool(requests):
    budget = MemoryBudget(5 * MiB, small_bytes=MiB, max_waiters=3, wait_seconds=0.005)
    barrier = threading.Barrier(len(requests))
    over: list[int] = []

    def run(needs: list[int]) -> None:
        barrier.wait()
        try:
            with budget.hold() as hold:
                for i, need in enumerate(needs):
                    hold.need(need)
                    if budget.used_bytes > budget.capacity_bytes:
                        over.append(budget.used_bytes)
                    if i == len(needs) // 2:
                        hold.estimated()
        except (TooLarge, Unavailable):
            pass

    threads = [threading.Thread(target=run, args=(needs,)) for needs in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not over and budget.peak_bytes <= budget.capacity_bytes
    assert budget.used_bytes == 0 and not budget._turn.locked()
