"""Webhook deliveries (issue 28), sent by threads of every worker process, never by a job's own thread:
a slow or dead receiver delays only its own deliveries.

Each sender thread claims a due delivery (service/platform/webhooks.py: leased, so one killed mid-delivery is
sent again later), POSTs the job's public record (what `GET /v1/jobs/{id}` answers) signed with the
owner's secret, through the SSRF guard of service/platform/outbound.py, and logs the attempt on the job:
- a 2xx answer: delivered;
- a refused address (private, loopback, link-local, … and not in AGILEGAN_WEBHOOK_ALLOW; also after a
  redirect or a DNS answer) or an invalid URL: refused, not retried;
- another 4xx but 408 and 429: the receiver does not want it, gave up;
- 5xx, 408, 429, a timeout or a connection error: retried after AGILEGAN_WEBHOOK_BACKOFF_S · 2^attempt
  (at most 5 minutes between tries), until AGILEGAN_WEBHOOK_RETRY_WINDOW_S after the event; then gave up.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from service.platform.job_view import public_job
from service.platform.jobstore import JobStore
from service.platform.outbound import AddressRefused, OutboundPolicy, UrlInvalid, post
from service.platform.settings import Settings
from service.platform.webhooks import Delivery, WebhookQueue, WebhookSecrets, record_delivery, sign

log = logging.getLogger("agilegan.webhooks")
MAX_GAP_S = 300.0
IDLE_S = 0.2  # how often an idle sender looks for due deliveries
USER_AGENT = "AgileGAN-Webhook/1"


class WebhookSender:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis, self.settings = redis, settings
        self.queue, self.secrets = WebhookQueue(redis), WebhookSecrets(redis)
        self.jobs = JobStore(redis, settings.result_ttl_s)
        self.policy = OutboundPolicy.from_cidrs(settings.webhook_allow, timeout_s=settings.webhook_timeout_s)
        self._stop = threading.Event()

    def start(self, threads: int) -> list[threading.Thread]:
        started = [threading.Thread(target=self._loop, name=f"webhook-{i}", daemon=True) for i in range(threads)]
        for thread in started:
            thread.start()
        return started

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.send_one():
                    self._stop.wait(IDLE_S)
            except RedisError as e:  # Redis down: the deliveries wait in it
                log.warning("webhook sender: %s", e)
                self._stop.wait(1.0)
            except Exception:
                log.exception("webhook sender")
                self._stop.wait(1.0)

    def send_one(self) -> bool:
        """Deliver one due delivery, if any; True when there was one."""
        delivery = self.queue.claim()
        if delivery is None:
            return False
        record = self.jobs.get(delivery.job_id)
        if record is None or not record.get("webhook_url"):  # the job was deleted meanwhile
            self.queue.finish(delivery)
            return True
        entry = self._attempt(delivery, record)
        record_delivery(self.redis, delivery.job_id, entry, self.settings.result_ttl_s)
        if entry["outcome"] == "retrying":
            self.queue.retry(delivery, time.time() + entry.pop("_wait"))
        else:
            self.queue.finish(delivery)
        return True

    def _attempt(self, delivery: Delivery, record: dict[str, Any]) -> dict[str, Any]:
        """One POST and what came of it: the delivery log's entry (with `_wait` when retrying)."""
        body = json.dumps(public_job(delivery.job_id, record, self.redis)).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-AgileGAN-Event": delivery.event,
            "X-AgileGAN-Delivery": f"{delivery.job_id}.{delivery.event}.{delivery.first_at}",
            "X-AgileGAN-Signature": sign(self.secrets.get(record.get("owner", "")), timestamp, body),
        }
        started = time.monotonic()
        status, error, permanent = None, None, False
        try:
            answer = post(record["webhook_url"], body, headers, self.policy)
            status, error = answer.status, answer.error
        except (AddressRefused, UrlInvalid) as e:
            error, permanent = f"refused: {e}", True
        except (OSError, TimeoutError, http.client.HTTPException) as e:
            error = f"{type(e).__name__}: {e}"[:300]
        entry = {
            "event": delivery.event,
            "attempt": delivery.attempt + 1,
            "at": time.time(),
            "status": status,
            "error": error,
            "seconds": round(time.monotonic() - started, 3),
        }
        entry["outcome"] = self._outcome(delivery, status, error, permanent, entry)
        return entry

    def _outcome(
        self, delivery: Delivery, status: int | None, error: str | None, permanent: bool, entry: dict[str, Any]
    ) -> str:
        if permanent:
            return "refused"
        if status is not None and 200 <= status < 300 and error is None:
            return "delivered"
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            return "gave_up"
        wait = min(self.settings.webhook_backoff_s * 2**delivery.attempt, MAX_GAP_S)
        if delivery.age_s + wait > self.settings.webhook_retry_window_s:
            return "gave_up"
        entry["_wait"] = wait
        return "retrying"
