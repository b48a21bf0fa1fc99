"""The worker process: `agilegan worker --queues stylize[,train]`.

rq's `SimpleWorker` runs jobs in this process (no fork per job), so the models stay loaded and CUDA
stays valid. It has two traps that `WarmWorker` fixes (design notes, rq 3.0.0):
- it sends no heartbeat while a job runs, so a long job looks abandoned, and a dead worker's job is
  only noticed when its long registry entry expires. Here a thread heartbeats every
  `heartbeat_interval_s` with a short TTL (`heartbeat_ttl_s`): a live job is never reaped, and a
  killed worker's job expires within that TTL;
- abandoned jobs are only recovered by another worker's maintenance pass, every 600 s by default;
  here every `maintenance_interval_s`, with a short worker TTL so idle workers loop often;
- claimed jobs that never started (a batching worker killed mid-batch) wait a minute in rq's
  intermediate list; here they are requeued within a heartbeat TTL (workers/orphans.py);
- one job at a time leaves the GPU idle while a batch's results are encoded: here, while a batch's jobs
  finish, the jobs waiting by then are claimed and prepared (crops, networks) in a thread, up to
  `MAX_CHAIN` batches back to back (workers/serving/batching.py);
- its command thread (pub/sub) waits up to 60 s per pass, and redis-py ≥ 8.2 joins that thread on
  stop: a worker told to stop could take a minute to exit (so `up` killed it and tests waited 20 s
  for it). Here the pass is `PUBSUB_PASS_S`.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import UNEVALUATED, Job
from rq.worker import WorkerStatus

from service.platform.contract import QUEUES
from service.platform.job_kinds import ANIMATE, STYLIZE, kind_of_function
from service.platform.settings import Settings
from workers.context import JobContext, configure_context, job_context
from workers.orphans import requeue_orphaned_claims
from workers.serving import batching, stylize_pipeline
from workers.serving.cache import configure_serving, serving_cache
from workers.webhook_sender import WebhookSender

log = logging.getLogger("agilegan.worker")


PUBSUB_PASS_S = 0.5  # the command thread's longest wait: what its stop can cost
MAX_CHAIN = 16  # batches run back to back before rq's own loop (maintenance, its checks) gets a turn


class WarmWorker(SimpleWorker):
    heartbeat_interval: float = 5.0
    job_heartbeat_ttl: int = 20
    max_batch: int = 1  # stylize jobs taken at once (workers/serving/batching.py); 1 = one at a time
    batch_wait_s: float = 0.005
    _claimed: frozenset[str] = frozenset()  # ids of the jobs the batcher claimed for the batch being run

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.job_heartbeat_ttl

    def clean_registries(self) -> None:
        """rq's maintenance, then the requeue of claims whose worker died before starting them."""
        super().clean_registries()
        for queue in self.queues:
            try:  # each requeued job is logged with its kind
                requeue_orphaned_claims(queue, after_s=self.job_heartbeat_ttl)
            except Exception:  # maintenance is retried on the next pass
                log.exception("requeuing orphaned claims of %s failed", queue.name)

    def subscribe(self) -> None:
        """rq's command channel (stop-job, shutdown), with a thread whose waits are short enough that
        stopping it (a join, in redis-py 8.2) returns within `PUBSUB_PASS_S`."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_PASS_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def execute_job(self, job: Job, queue: Queue) -> None:
        # 1. More stylize jobs from the same queue, through rq's dequeue, when batching is on.
        chaining = self.max_batch > 1 and batching.batchable(job)
        batch = [(job, queue)]
        if chaining:
            batch += batching.claim_more(self, queue, self.max_batch - 1, self.batch_wait_s)
        pairs: list = []  # every claimed job's (job, execution): heartbeating until it is done
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat_loop, args=(pairs, stop), daemon=True)
        try:
            # 2. Every claimed job's execution registered and heartbeating before any work starts.
            executions = self._register(batch, pairs, first_dequeued_by_rq=True)
            beat.start()
            # 3. The networks once per group (workers/serving/stylize_pipeline.py).
            if len(batch) > 1:
                self._prepare(batch)
            for link in range(MAX_CHAIN):
                # 4. While this batch's jobs finish (encodes in the CPU pool, storing, recording), the jobs
                # waiting by then are claimed and prepared in a thread: their crops and networks overlap
                # this batch's encodes. Not in the chain's last batch: what it claimed would never run.
                ahead = None
                if chaining and not self._stop_requested and link + 1 < MAX_CHAIN:
                    more = batching.claim_more(self, queue, self.max_batch, 0.0)
                    if more:
                        thread = threading.Thread(target=self._prepare, args=(more, True), daemon=True)
                        ahead = (more, self._register(more, pairs), thread)
                        thread.start()
                # 5. Each job through rq as usual: it finds its image (or its error) prepared.
                for (j, q), execution in zip(batch, executions):
                    self.perform_job(j, q, execution)
                if ahead is None:
                    break
                batch, executions, thread = ahead
                thread.join()
        finally:
            stop.set()
            if beat.is_alive():
                beat.join(timeout=5)
            serving_cache().prepared.clear()
        self.set_state(WorkerStatus.IDLE)

    def _register(self, batch: list, pairs: list, first_dequeued_by_rq: bool = False) -> list:
        """Register the executions of a batch's jobs with rq (their heartbeats start with the next beat)."""
        executions = [self.prepare_execution(j) for j, _ in batch]
        claimed = batch[1:] if first_dequeued_by_rq else batch
        self._claimed = self._claimed | frozenset(j.id for j, _ in claimed)
        pairs.extend((j, e) for (j, _), e in zip(batch, executions))
        return executions

    def _prepare(self, batch: list, ahead: bool = False) -> None:
        """The batch's images (workers/serving/stylize_pipeline.py), found by each job's own run. `ahead`: prepared
        while the previous batch finished."""
        cache = serving_cache()
        payloads = [j.args[0] for j, _ in batch if batching.batchable(j)]
        try:
            jobs = stylize_pipeline.payload_jobs(payloads)
            cache.prepared.update(stylize_pipeline.prepare(job_context(), cache, jobs, ahead))
        except Exception:  # Redis, say: each job then runs its own steps (and retries) alone
            log.exception("preparing a batch failed; its jobs run one by one")

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """rq's dequeue of one queue parks the job in that queue's intermediate list, and rq takes it out
        when the job starts only on workers of a single queue (a worker of several dequeues without the
        list). The batcher claims from one queue whatever the worker's queues, so its jobs are taken out
        here, as they start: a claimed job left there is re-run as "stuck" a minute after it finished,
        and one that never started (its worker died first) is recovered from there."""
        upgrade_legacy_paths(job)
        super().prepare_job_execution(job, remove_from_intermediate_queue or job.id in self._claimed)

    def _heartbeat_loop(self, claimed: list, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_interval):
            pairs = list(claimed)  # the worker appends the batches it claims ahead
            try:  # every job's status in one round trip
                with self.connection.pipeline(transaction=False) as pipe:
                    for job, _ in pairs:
                        pipe.hget(job.key, "status")
                    statuses = pipe.execute()
            except Exception:
                log.exception("reading the batch's job statuses failed")
                continue
            for (job, execution), status in zip(pairs, statuses):
                if status is None or status.decode() in ("finished", "failed", "canceled"):
                    continue  # done or deleted: its execution is gone
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception:  # a missed beat is retried; the TTL tolerates several
                    log.exception("heartbeat for job %s failed", job.id)


def run_worker(settings: Settings, queues: list[str], burst: bool = False) -> None:
    """The worker's main: 1. its job context and serving cache, warmed up; 2. rq's worker on `queues`, with
    the sweeper, the registry's pull loop and the webhook sender beside it. `burst`: stop when the queues
    are empty (tests, tools)."""
    unknown = [q for q in queues if q not in QUEUES]
    if unknown:
        raise ValueError(f"unknown queue(s) {unknown}; known: {list(QUEUES)}")
    if settings.worker_nice:
        os.nice(settings.worker_nice)  # uploads wait on the API's CPU; jobs can yield it (README)
    # 1. The context, and the serving cache warmed (compiled programs only where images are served).
    ctx = configure_context(settings)
    cache = configure_serving(ctx)
    redis = Redis.from_url(settings.redis_url)
    redis.ping()
    seconds = cache.warm_up(serves_images=bool({STYLIZE.queue, ANIMATE.queue} & set(queues)))
    log.info("warm-up done in %.1f s on %s", seconds, ctx.device)
    # 2. rq's worker, and the loops beside it.
    worker = WarmWorker(
        [Queue(q, connection=redis) for q in queues],
        connection=redis,
        name=f"{os.uname().nodename}.{os.getpid()}",
        worker_ttl=settings.worker_ttl_s,
        maintenance_interval=settings.maintenance_interval_s,
    )
    worker.heartbeat_interval = settings.heartbeat_interval_s
    worker.job_heartbeat_ttl = settings.heartbeat_ttl_s
    worker.max_batch = cache.max_batch
    worker.batch_wait_s = settings.batch_wait_ms / 1000
    ctx.worker_name = worker.name
    ctx.worker = worker
    threading.Thread(target=_sweep_loop, args=(ctx,), daemon=True).start()
    if ctx.mirror.enabled:
        threading.Thread(target=_mirror_loop, args=(ctx, settings.registry_sync_s), daemon=True).start()
    WebhookSender(redis, settings).start(settings.webhook_threads)  # callbacks, off the jobs' thread
    worker.work(burst=burst, logging_level="INFO")  # no scheduler: retries are immediate (see workers/lifecycle.py)


def upgrade_legacy_paths(job: Job) -> None:
    """A job queued before the kinds' table (service/platform/job_kinds.py) names its function and failure
    callback by their old paths: it runs, and fails, as the kind it was (both rewritten in its rq hash)."""
    kind = kind_of_function(job.func_name)
    if kind is None or job.func_name == kind.function:
        return
    log.info("job %s: queued as %s, run as the %s kind", job.id, job.func_name, kind.name)
    job.func_name = kind.function
    job._failure_callback_name = kind.on_failure
    job._failure_callback = UNEVALUATED  # rq's cached import of the old callback, if it made one
    job.connection.hset(job.key, mapping={"data": job.data, "failure_callback_name": kind.on_failure})


def _sweep_loop(ctx: JobContext) -> None:
    """Delete results older than the result TTL, and inputs as old of jobs no longer queued or running,
    every few minutes (while Redis is down nothing is deleted)."""
    ttl_s = ctx.settings.result_ttl_s
    while True:
        try:
            removed = ctx.storage.sweep(ttl_s, ctx.jobs.is_active)
            if removed:
                log.info("swept %d expired inputs/results", removed)
        except Exception:
            log.exception("sweep failed")
        time.sleep(min(300, ttl_s / 4))


def _mirror_loop(ctx: JobContext, every_s: float) -> None:
    """Pull the registry's bundles published by other hosts (a remote store) every `every_s`."""
    while True:
        time.sleep(every_s)
        ctx.mirror.pull()
