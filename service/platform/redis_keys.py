"""Every Redis key of the service, built here and nowhere else (rq's own keys are rq's).

All of ours start with `agilegan:`, so an operator can tell them apart from rq's (`rq:`) in one SCAN.
"""

from __future__ import annotations

import hashlib

KEY_PREFIX = "agilegan"

# --- jobs
JOB_PATTERN = f"{KEY_PREFIX}:job:*"  # SCAN match of every job record (and of their side keys)


def job_key(job_id: str) -> str:
    """Hash holding our record of a job (status, owner, timestamps, error, result)."""
    return f"{KEY_PREFIX}:job:{job_id}"


def job_id_of(key: bytes | str) -> str:
    """The job id of a key `job_key` built (the last `:` field)."""
    text = key.decode() if isinstance(key, bytes) else key
    return text.rsplit(":", 1)[1]


def progress_sent_key(job_id: str) -> str:
    """The throttle of a job's progress webhooks (set while one was sent recently)."""
    return f"{job_key(job_id)}:progress-sent"


def cancel_key(job_id: str) -> str:
    """Set when a client cancels a job; the worker checks it between steps."""
    return f"{KEY_PREFIX}:cancel:{job_id}"


def idempotency_key(key_id: str, key: str) -> str:
    """A client's Idempotency-Key reservation (the key itself hashed: it is client text)."""
    return f"{KEY_PREFIX}:idem:{key_id}:{hashlib.sha256(key.encode()).hexdigest()}"


ENQUEUE_LOCK = f"{KEY_PREFIX}:lock:stylize-enqueue"  # the queue cap's check and enqueue, across API processes


def orphan_seen_key(job_id: str) -> str:
    """When a maintenance pass first saw a claimed job without an execution (workers/orphans.py)."""
    return f"{KEY_PREFIX}:orphan-seen:{job_id}"


# --- styles
# hash: style id → its style.json, when the registry is on a remote store (service/platform/style_records.py)
STYLES_KEY = f"{KEY_PREFIX}:styles"


def style_progress_key(style_id: str) -> str:
    """Hash with a training style's live progress (step, losses, best score, ETA)."""
    return f"{KEY_PREFIX}:style-progress:{style_id}"


def style_curve_key(style_id: str) -> str:
    """List of a training style's evaluations ({"step", "score"} JSON), for the console's chart."""
    return f"{style_progress_key(style_id)}:curve"


def style_cancel_key(style_id: str) -> str:
    """Set when an operator cancels a style's training; the training job stops at its next step."""
    return f"{KEY_PREFIX}:style-cancel:{style_id}"


# --- webhooks
WEBHOOKS_DUE_KEY = f"{KEY_PREFIX}:webhooks"  # sorted set of deliveries by due time (service/platform/webhooks.py)


def webhook_key(job_id: str) -> str:
    """List of a job's webhook deliveries (attempts, answers), newest last."""
    return f"{job_key(job_id)}:webhook"


def webhook_secret_key(key_id: str) -> str:
    """An API key's webhook signing secret."""
    return f"{KEY_PREFIX}:webhook-secret:{key_id}"


# --- metrics
def metrics_key(name: str) -> str:
    """A counter hash of /metrics (requests, stage seconds, failures), or a limiter's window (`rate:…`)."""
    return f"{KEY_PREFIX}:metrics:{name}"
