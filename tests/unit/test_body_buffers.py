"""The worker's budget of buffered request bodies (receiver/body_buffers.py), as a table of steps."""

from __future__ import annotations

import threading

import pytest

from receiver.body_buffers import INBUF_OVERFLOW_BYTES, SMALL_BODY_BYTES, BodyBuffers

KIB = 1024


@pytest.mark.parametrize(("held", "wanted", "admitted", "used", "memory"), [
    (0, SMALL_BODY_BYTES, True, 0, 0),  # small: never counted
    (0, SMALL_BODY_BYTES + 1, True, SMALL_BODY_BYTES + 1, SMALL_BODY_BYTES + 1),
    (0, 600 * KIB, True, 600 * KIB, INBUF_OVERFLOW_BYTES),  # in memory only up to waitress's overflow
    (0, 1024 * KIB, True, 1024 * KIB, INBUF_OVERFLOW_BYTES),  # exactly the capacity
    (0, 1024 * KIB + 1, False, 0, 0),  # past the capacity
    (600 * KIB, 500 * KIB, True, 600 * KIB, INBUF_OVERFLOW_BYTES),  # a chunked body never shrinks its share
], ids=["small", "just-counted", "spills", "exactly-full", "over", "no-shrink"])
def test_a_body_is_counted_by_its_size_and_its_share_of_memory(held, wanted, admitted, used, memory):
    buffers = BodyBuffers(capacity_bytes=1024 * KIB, memory_bytes=1024 * KIB)
    if held:
        assert buffers.grow(0, held)
    assert buffers.grow(held, wanted) is admitted
    assert (buffers.used_bytes, buffers.memory_used_bytes) == (used, memory)


def test_the_memory_share_is_capped_apart_from_the_total():
    buffers = BodyBuffers(capacity_bytes=64 * 1024 * KIB, memory_bytes=1024 * KIB)
    assert buffers.grow(0, 512 * KIB) and buffers.grow(0, 512 * KIB)
    assert not buffers.grow(0, 20 * KIB), "no memory left, though the total has room"
    assert buffers.refused == 1
    buffers.give_back(512 * KIB)
    assert buffers.grow(0, 20 * KIB)


def test_a_growing_body_takes_only_the_difference_and_gives_back_all_of_it():
    buffers = BodyBuffers(capacity_bytes=1024 * KIB)
    held = 0
    for size in range(10 * KIB, 900 * KIB, 10 * KIB):
        assert buffers.grow(held, size)
        held = buffers.counted(size)
    assert buffers.used_bytes == held
    buffers.give_back(held)
    assert (buffers.used_bytes, buffers.memory_used_bytes) == (0, 0)
    assert buffers.peak_bytes == held


def test_concurrent_takers_never_pass_the_capacity():
    buffers = BodyBuffers(capacity_bytes=1000 * KIB, memory_bytes=1000 * KIB)
    admitted = []

    def take() -> None:
        for _ in range(200):
            if buffers.grow(0, 30 * KIB):
                admitted.append(1)
                buffers.give_back(30 * KIB)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert buffers.peak_bytes <= 1000 * KIB
    assert buffers.used_bytes == 0 and admitted
