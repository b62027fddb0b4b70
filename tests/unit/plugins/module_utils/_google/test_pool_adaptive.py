"""pool.AdaptiveConcurrency (with a fake clock: no timing) and run_per_user following its level."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

import pytest

from ansible_collections.nupoint.gworkspace.plugins.module_utils._google import pool


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def feed(adaptive, clock, rate_at, results, pushback_at=()):
    """``results`` results, each arriving ``1 / rate_at(level)`` seconds after the previous one."""
    for number in range(results):
        clock.now += 1.0 / rate_at(adaptive.limit)
        adaptive.record({"n": number, "pushback": number in pushback_at})


def adaptive(clock, **kwargs):
    kwargs.setdefault("pushback", lambda result: result["pushback"])
    return pool.AdaptiveConcurrency(clock=clock, **kwargs)


def test_latency_bound_run_grows_to_the_cap_and_stays():
    # 40 ms round trips: each worker finishes 1 / 0.2 s, so the rate is proportional to the level.
    clock = FakeClock()
    level = adaptive(clock)
    feed(level, clock, lambda limit: limit / 0.2, 2000)
    assert level.levels == [16, 24, 36, 54, 64]
    assert (level.limit, level.peak, level.settled) == (64, 64, True)


def test_cpu_bound_run_tries_one_step_up_and_comes_back():
    # Two busy cores: the rate is the same whatever the level.
    clock = FakeClock()
    level = adaptive(clock)
    feed(level, clock, lambda limit: 120.0, 2000)
    assert level.levels == [16, 24, 16]
    assert (level.limit, level.peak, level.settled) == (16, 24, True)


def test_growth_stops_where_the_rate_stops_growing():
    # The servers saturate at 36 workers' worth of work: 54 brings nothing, so the run goes back to 36.
    clock = FakeClock()
    level = adaptive(clock)
    feed(level, clock, lambda limit: min(limit, 36) / 0.2, 3000)
    assert level.levels == [16, 24, 36, 54, 36]
    assert level.limit == 36


def test_a_small_gain_is_not_worth_more_workers():
    # +10 % for +50 % workers is below the 15 % the step must earn.
    clock = FakeClock()
    level = adaptive(clock)
    feed(level, clock, lambda limit: 100.0 * (1.10 if limit > 16 else 1.0), 2000)
    assert level.levels == [16, 24, 16]


def test_pushback_halves_once_per_burst_and_stops_growth():
    clock = FakeClock()
    level = adaptive(clock)
    # A burst of push-back on results 100..105, while the level is 24: halved once, to 12, then it stays.
    feed(level, clock, lambda limit: limit / 0.2, 400, pushback_at=set(range(100, 106)))
    assert level.levels == [16, 24, 12]
    assert (level.limit, level.settled) == (12, True)


def test_repeated_pushback_halves_down_to_the_minimum():
    clock = FakeClock()
    level = adaptive(clock)
    feed(level, clock, lambda limit: 100.0, 400, pushback_at=set(range(0, 400, 40)))
    assert level.limit == pool.ADAPTIVE_MIN
    assert level.levels == [16, 8, 4]


def test_start_and_minimum_are_kept_within_the_cap():
    clock = FakeClock()
    level = adaptive(clock, start=16, cap=8)
    assert (level.limit, level.levels) == (8, [8])
    feed(level, clock, lambda limit: limit / 0.2, 200)
    assert level.limit == 8 and level.settled
    assert pool.AdaptiveConcurrency(start=1, cap=1000).cap == pool.MAX_CONCURRENCY


def test_workers_for_an_adaptive_run_is_its_cap_within_the_items():
    assert pool.workers_for(pool.AdaptiveConcurrency(cap=64), 2500) == 64
    assert pool.workers_for(pool.AdaptiveConcurrency(cap=64), 10) == 10


class ScriptedLevel(pool.AdaptiveConcurrency):
    """A level that follows a script: ``{results recorded: new limit}``."""

    def __init__(self, start, script):
        super().__init__(start=start, cap=64, minimum=1)
        self.script = dict(script)
        self.recorded = 0
        self.lock = threading.Lock()

    def record(self, result):
        with self.lock:
            self.recorded += 1
            if self.recorded in self.script:
                self.limit = self.script[self.recorded]
                self.levels.append(self.limit)
            return self.limit


def test_run_per_user_starts_workers_when_the_level_grows():
    # Items 2..7 only finish once six of them are in work at the same time: proof that the two
    # workers the run started with became six when the level grew after the first result.
    barrier = threading.Barrier(6, timeout=30)

    def work(item):
        if 2 <= item < 8:
            barrier.wait()
        return {"item": item, "thread": threading.current_thread().name}

    before = threading.active_count()
    level = ScriptedLevel(2, {1: 6})
    results = pool.run_per_user(list(range(12)), work, concurrency=level, name="adaptive")
    assert [result["item"] for result in results] == list(range(12))
    assert len({result["thread"] for result in results}) <= 6
    assert threading.active_count() == before


def test_run_per_user_lets_workers_go_when_the_level_shrinks():
    before = threading.active_count()
    level = ScriptedLevel(8, {4: 1})
    seen = []
    lock = threading.Lock()
    running = [0]

    def work(item):
        with lock:
            running[0] += 1
            seen.append((level.recorded, running[0]))
        with lock:
            running[0] -= 1
        return {"item": item}

    results = pool.run_per_user(list(range(200)), work, concurrency=level, name="adaptive")
    assert [result["item"] for result in results] == list(range(200))
    assert threading.active_count() == before
    # Once the level is 1 and the workers that were busy have finished, one item at a time: the last
    # items ran alone.
    assert all(count == 1 for _recorded, count in seen[-20:])


def test_run_per_user_adaptive_raises_the_first_error_after_every_worker_ended():
    before = threading.active_count()

    def work(item):
        if item == 30:
            raise RuntimeError("boom")
        return {"item": item}

    with pytest.raises(RuntimeError, match="boom"):
        pool.run_per_user(list(range(100)), work, concurrency=pool.AdaptiveConcurrency(start=4, cap=8))
    assert threading.active_count() == before
