"""A worker told to stop exits within seconds (issue 21: `up` left a killed worker as a zombie after waiting
20 s for it). rq's command thread waited up to 60 s per pass, and redis-py 8.2 joins it on stop: when the
thread had already seen its unsubscription, the worker's teardown hung for the rest of that minute."""

from __future__ import annotations

import signal
import time

from redis import Redis
from rq import Queue

from workers.worker import PUBSUB_PASS_S, WarmWorker


def test_the_command_thread_stops_within_its_pass_whatever_its_phase(redis: Redis) -> None:
    worker = WarmWorker([Queue("stylize", connection=redis)], connection=redis, name="shutdown-test")
    worker.subscribe()
    time.sleep(0.3)
    worker.pubsub.unsubscribe()  # the phase that hung: the thread has seen the unsubscription and waits
    time.sleep(0.3)
    started = time.monotonic()
    worker.unsubscribe()
    assert time.monotonic() - started < PUBSUB_PASS_S + 1.5
    assert not worker.pubsub_thread.is_alive()


def test_a_worker_process_exits_soon_after_sigterm(make_settings, start_worker, redis: Redis) -> None:
    worker = start_worker(make_settings(), queues="stylize")
    time.sleep(1.0)  # its command thread is in a wait
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    worker.proc.wait(timeout=30)
    assert time.monotonic() - started < 5 and worker.proc.returncode == 0
