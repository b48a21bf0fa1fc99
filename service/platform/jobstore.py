"""Our record of each job, a Redis hash beside rq's own job data.

rq's statuses have known traps (a finished job later marked abandoned: rq#2424; SimpleWorker jobs
that look stuck), so the API reports this record, which only the job's own steps change, and a
stored success is never overwritten by a later failure mark (`mark_failed` is a no-op then).
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from service.platform.contract import FINISHED, TERMINAL, JobState
from service.platform.redis_keys import WEBHOOKS_DUE_KEY, cancel_key, job_key, progress_sent_key
from service.platform.webhooks import WebhookSpec

PROGRESS_EVERY_S = 2.0  # at most one `progress` webhook per job this often

# A transition's webhook delivery (service/platform/webhooks.py), in the transition's own call: when the job's
# `webhook_events` has the event, "job|event|at|0" is due now in the deliveries' sorted set (KEYS[2]).
_NOTIFY = """
local function wants(job_key, event)
  local events = redis.call('HGET', job_key, 'webhook_events')
  return events and string.find(',' .. events .. ',', ',' .. event .. ',', 1, true)
end
local function due(due_key, job_id, event, at)
  redis.call('ZADD', due_key, at, job_id .. '|' .. event .. '|' .. at .. '|0')
end
local function notify(job_key, due_key, job_id, event, at)
  if wants(job_key, event) then due(due_key, job_id, event, at) end
end
"""

_FAIL_UNLESS_DONE = (
    _NOTIFY
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'succeeded' or status == 'canceled' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'error_code', ARGV[2], 'error_message', ARGV[3],
           'finished_at', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
notify(KEYS[1], KEYS[2], ARGV[6], ARGV[1] == 'canceled' and 'canceled' or 'failed', ARGV[4])
return 1
"""
)


_REQUEUE_IF_RUNNING = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'last_error', ARGV[2], 'progress', 0)
redis.call('HDEL', KEYS[1], 'stage', 'started_at', 'worker')
return 1
"""


_RUN_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'started_at', ARGV[2], 'worker', ARGV[3], 'progress', 0)
redis.call('HDEL', KEYS[1], 'stage')
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return 1
"""

_ADVANCE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'canceled' end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'gone' end
for i = 3, #ARGV do
  if status == ARGV[i] then return 'finished' end
end
redis.call('HSET', KEYS[1], 'stage', ARGV[1], 'progress', ARGV[2])
return 'ok'
"""

_SUCCEED_IF_RUNNING = (
    _NOTIFY
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' and status ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], 'progress', 1, 'stage', 'done',
           'result', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
notify(KEYS[1], KEYS[2], ARGV[5], 'completed', ARGV[2])
return 1
"""
)

# Progress, and a `progress` webhook when the job wants one, at most once per ARGV[3] ms (KEYS[3]: the
# job's throttle key).
_PROGRESS = (
    _NOTIFY
    + """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if wants(KEYS[1], 'progress') and redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then
  due(KEYS[2], ARGV[1], 'progress', ARGV[2])
end
return 1
"""
)


class JobStore:
    def __init__(self, redis: Redis, result_ttl_s: int, pending_ttl_s: int = 7 * 86400) -> None:
        self.redis = redis
        self.result_ttl_s = result_ttl_s
        self.pending_ttl_s = pending_ttl_s
        self._fail = redis.register_script(_FAIL_UNLESS_DONE)
        self._requeue = redis.register_script(_REQUEUE_IF_RUNNING)
        self._succeed = redis.register_script(_SUCCEED_IF_RUNNING)
        self._run = redis.register_script(_RUN_IF_EXISTS)
        self._advance = redis.register_script(_ADVANCE)
        self._progress = redis.register_script(_PROGRESS)

    def create(
        self, job_id: str, owner: str, kind: str, fields: dict[str, Any], webhook: WebhookSpec | None = None
    ) -> None:
        """A queued job's record; `webhook`: where and for which events to call the client back."""
        record = {
            "status": JobState.QUEUED,
            "owner": owner,
            "kind": kind,
            "created_at": time.time(),
            "options": json.dumps(fields),
        }
        if webhook is not None:
            record.update(webhook_url=webhook.url, webhook_events=",".join(webhook.events))
        with self.redis.pipeline() as p:
            p.hset(job_key(job_id), mapping=record)
            p.expire(job_key(job_id), self.pending_ttl_s)
            p.execute()

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(job_key(job_id))
        if not raw:
            return None
        record: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
        for field in ("created_at", "started_at", "finished_at", "progress"):
            if field in record:
                record[field] = float(record[field])
        record["attempts"] = int(record.get("attempts", 0))
        record["options"] = json.loads(record.get("options", "{}"))
        if "result" in record:
            record["result"] = json.loads(record["result"])
        if "detail" in record:
            record["detail"] = json.loads(record["detail"])
        return record

    def mark_running(self, job_id: str, worker: str) -> bool:
        """A worker starts the job (attempts + 1); False, and nothing written, when its record is gone."""
        return bool(self._run(keys=[job_key(job_id)], args=[JobState.RUNNING, time.time(), worker]))

    def mark_requeued(self, job_id: str, reason: str) -> bool:
        """The job's run ended without an outcome (its worker died, or a transient error outlived the
        in-process retries) and rq queued it again: report it as queued, not as still running.
        A no-op for a job already finished; True when recorded."""
        return bool(self._requeue(keys=[job_key(job_id)], args=[JobState.QUEUED, reason[:300]]))

    def progress(self, job_id: str, stage: str, fraction: float, detail: dict[str, Any] | None = None) -> None:
        """Stage and fraction done; `detail` (e.g. a video's frames done, total and ETA) goes with them."""
        mapping: dict[str, Any] = {"stage": stage, "progress": round(fraction, 3)}
        if detail is not None:
            mapping["detail"] = json.dumps(detail)
        pairs = [v for item in mapping.items() for v in item]
        keys = [job_key(job_id), WEBHOOKS_DUE_KEY, progress_sent_key(job_id)]
        self._progress(keys=keys, args=[job_id, time.time(), int(PROGRESS_EVERY_S * 1000), *pairs])

    def advance(self, job_ids: list[str], stage: str, fraction: float) -> dict[str, str]:
        """A stage reached by several jobs, in one round trip: each job's progress is written unless it was
        canceled ("canceled"), deleted ("gone") or finished ("finished"); by job id, "ok" when written."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                keys = [job_key(job_id), cancel_key(job_id)]
                self._advance(keys=keys, args=[stage, round(fraction, 3), *FINISHED], client=pipe)
            answers = pipe.execute()
        return {job_id: (a.decode() if isinstance(a, bytes) else a) for job_id, a in zip(job_ids, answers)}

    def mark_succeeded(self, job_id: str, result: dict[str, Any]) -> bool:
        """Record the success of a job that is still running; a job canceled or deleted meanwhile
        stays so (its record is not recreated). True when recorded."""
        args = [JobState.SUCCEEDED, time.time(), json.dumps(result), self.result_ttl_s, job_id]
        return bool(self._succeed(keys=[job_key(job_id), WEBHOOKS_DUE_KEY], args=args))

    def delete(self, job_id: str) -> None:
        self.redis.delete(job_key(job_id))

    def mark_failed(self, job_id: str, code: str, message: str, status: str = JobState.FAILED) -> bool:
        """Record a failure (or cancel) unless the job already succeeded; True when recorded."""
        args = [status, code, message[:500], time.time(), self.result_ttl_s, job_id]
        return bool(self._fail(keys=[job_key(job_id), WEBHOOKS_DUE_KEY], args=args))

    def mark_canceled(self, job_id: str, message: str = "canceled by the client") -> bool:
        return self.mark_failed(job_id, "canceled", message, status=JobState.CANCELED)

    def cancel_queued(self, job_id: str, message: str = "canceled by the client") -> None:
        """Take a queued job off its rq queue (it never runs) and record it canceled."""
        try:
            Job.fetch(job_id, connection=self.redis).cancel()
        except NoSuchJobError:
            pass  # already gone from rq: the record still says what happened
        self.mark_canceled(job_id, message)

    def is_active(self, job_id: str) -> bool:
        """Queued or running (its upload must stay); False when the record is gone or terminal."""
        status = self.redis.hget(job_key(job_id), "status")
        return status is not None and status.decode() in (JobState.QUEUED, JobState.RUNNING)

    @staticmethod
    def is_terminal(record: dict[str, Any]) -> bool:
        return record.get("status") in TERMINAL
