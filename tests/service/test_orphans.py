"""Claims whose worker died before starting them are requeued (workers/orphans.py), and nothing else is:
not a claim a live worker registered, not a job that started (rq recovers those with their retries)."""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.job import JobStatus

from workers.orphans import requeue_orphaned_claims
from workers.worker import WarmWorker


def test_only_orphaned_claims_are_requeued_and_only_once(redis: Redis) -> None:
    queue = Queue("stylize", connection=redis)
    orphan, held, running = (queue.enqueue("builtins.print", i, job_id=f"job-{i}") for i in range(3))
    claimed = [Queue.dequeue_any([queue], None, connection=redis)[0] for _ in range(3)]  # into the intermediate list
    assert [j.id for j in claimed] == [orphan.id, held.id, running.id] and queue.count == 0
    WarmWorker([queue], connection=redis, name="live").prepare_execution(held)  # a live worker's registered claim
    running.set_status(JobStatus.STARTED)  # and this one started; its worker's death is rq's to handle

    assert requeue_orphaned_claims(queue, after_s=0) == []  # first sighting: only marked
    assert requeue_orphaned_claims(queue, after_s=3600) == []  # not missing for long enough yet
    assert requeue_orphaned_claims(queue, after_s=0) == [orphan.id]
    assert queue.job_ids == [orphan.id]  # back at the front of its queue, once
    assert orphan.id not in queue.intermediate_queue.get_job_ids()
    assert sorted(queue.intermediate_queue.get_job_ids()) == [held.id, running.id]
    assert requeue_orphaned_claims(queue, after_s=0) == [] and queue.job_ids == [orphan.id]
