"""The soak in its short form (``python -m bench.soak`` runs the full 10,000 turns): many turns
through the real runtime and HTTP clients against the loopback servers, failures injected, with no
growth in memory or threads."""

from __future__ import annotations

import asyncio

from tests.support.soak import GROWTH_TARGET_MB, OUTCOMES, soak

TURNS = 400
FAIL_EVERY = 20


def test_many_turns_with_failures_leak_neither_memory_nor_threads() -> None:
    watch = asyncio.run(asyncio.wait_for(soak(TURNS, FAIL_EVERY, "loopback"), 300))
    outcomes = [OUTCOMES[index] for index in watch.outcomes]
    assert len(outcomes) == TURNS
    failed = outcomes.count("failed")
    assert failed == TURNS // FAIL_EVERY  # every injected failure, and nothing else, failed
    assert outcomes.count("answered") == TURNS - failed
    first, last = watch.checkpoints[0], watch.checkpoints[-1]
    assert last.rss_mb - first.rss_mb <= GROWTH_TARGET_MB
    assert last.os_threads == first.os_threads
    assert last.names == first.names
