"""Webhooks (issue 28) against a real HTTP receiver on 127.0.0.1 (tests/webhook_receiver.py), allowed by
AGILEGAN_WEBHOOK_ALLOW where a test needs it: the body is the job's public record, signed with the key's
secret; 500s and timeouts are retried with backoff and logged on the job; a delivery gives up after the
retry window; private addresses are refused, also behind a DNS name and a redirect; a slow receiver does
not slow the worker."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from service.platform.jobstore import JobStore
from service.platform.outbound import OutboundPolicy, UrlInvalid, allowed, check_url
from service.platform.redis_keys import WEBHOOKS_DUE_KEY, progress_sent_key
from service.platform.webhooks import WebhookSecrets, WebhookSpec, deliveries, verify
from tests.service.conftest import CLIENT_KEY, OPERATOR_KEY, auth, post_photo, wait_for
from tests.webhook_receiver import Receiver, Step
from workers.webhook_sender import WebhookSender

LOOPBACK = "127.0.0.1/32"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _sender(make_settings, redis: Redis, **overrides) -> WebhookSender:
    values = {"webhook_allow": LOOPBACK, "webhook_timeout_s": 1.0, "webhook_backoff_s": 0.2, **overrides}
    return WebhookSender(redis, make_settings(**values))


def _finished_job(redis: Redis, url: str, events=("completed", "failed", "canceled"), status="succeeded") -> str:
    """A job record as a worker leaves it, with a webhook: its delivery is now due."""
    jobs, job_id = JobStore(redis, 3600), uuid.uuid4().hex
    jobs.create(job_id, "c" * 16, "stylize", {"style": "demo"}, WebhookSpec(url, tuple(events)))
    jobs.mark_running(job_id, "w")
    if status == "succeeded":
        jobs.mark_succeeded(job_id, {"width": 256})
    else:
        jobs.mark_failed(job_id, "invalid_image", "not an image")
    return job_id


def _drain(sender: WebhookSender, until: float) -> None:
    """Run the sender in this thread until nothing is due or pending, or `until` seconds."""
    deadline = time.time() + until
    while time.time() < deadline and sender.queue.pending():
        if not sender.send_one():
            time.sleep(0.05)


def test_only_public_addresses_are_called_unless_allowed() -> None:
    refused = ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
               "224.0.0.1", "::1", "fc00::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"]  # fmt: skip
    policy = OutboundPolicy()
    assert not any(allowed(ipaddress.ip_address(a), policy) for a in refused)
    assert all(allowed(ipaddress.ip_address(a), policy) for a in ("8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"))
    assert allowed(ipaddress.ip_address("127.0.0.1"), OutboundPolicy.from_cidrs(LOOPBACK))
    assert not allowed(ipaddress.ip_address("127.0.0.2"), OutboundPolicy.from_cidrs(LOOPBACK))
    for bad in ("ftp://example.com/x", "http:///x", "http://user:pw@example.com/", "example.com", "http://a:99999/"):
        with pytest.raises(UrlInvalid):
            check_url(bad)


def test_a_delivery_is_signed_retried_after_500s_and_timeouts_and_logged(make_settings, redis, receiver) -> None:
    receiver.plans["/flaky"] = [Step(500), Step(200, sleep_s=2.0), Step(200)]  # a 500, a timeout, then fine
    job_id = _finished_job(redis, receiver.url("/flaky"))
    sender = _sender(make_settings, redis)
    _drain(sender, 30)
    got = receiver.wait("/flaky", 3)
    secret = WebhookSecrets(redis).get("c" * 16)
    for request in got:
        assert verify(secret, request.headers["X-AgileGAN-Signature"], request.body)
        assert not verify("another-secret", request.headers["X-AgileGAN-Signature"], request.body)
        assert request.headers["X-AgileGAN-Event"] == "completed"
    body = json.loads(got[-1].body)
    assert body["id"] == job_id and body["status"] == "succeeded" and body["result"] == {"width": 256}
    log = deliveries(redis, job_id)
    assert [(d["attempt"], d["status"], d["outcome"]) for d in log] == [
        (1, 500, "retrying"),
        (2, None, "retrying"),
        (3, 200, "delivered"),
    ]
    assert "timed out" in log[1]["error"] and 0.9 < log[1]["seconds"] < 2.0
    assert got[1].at - got[0].at >= 0.2 and got[2].at - got[1].at >= 0.4  # the backoff doubles
    assert redis.zcard(WEBHOOKS_DUE_KEY) == 0


def test_a_delivery_gives_up_after_the_retry_window(make_settings, redis, receiver) -> None:
    receiver.plans["/down"] = [Step(503)]
    job_id = _finished_job(redis, receiver.url("/down"), status="failed")
    _drain(_sender(make_settings, redis, webhook_retry_window_s=1.5), 10)
    log = deliveries(redis, job_id)
    assert [d["outcome"] for d in log][-1] == "gave_up" and all(d["status"] == 503 for d in log)
    assert 2 <= len(log) <= 4 and json.loads(receiver.at("/down")[0].body)["status"] == "failed"
    assert redis.zcard(WEBHOOKS_DUE_KEY) == 0
    # a 4xx other than 408/429 is the receiver's no: not retried
    receiver.plans["/gone"] = [Step(410)]
    job_id = _finished_job(redis, receiver.url("/gone"))
    _drain(_sender(make_settings, redis), 5)
    assert [(d["status"], d["outcome"]) for d in deliveries(redis, job_id)] == [(410, "gave_up")]


def test_private_addresses_are_refused_directly_by_name_and_after_a_redirect(make_settings, redis, receiver) -> None:
    # a DNS name that resolves to loopback, without the setting: refused, nothing sent
    by_name = _finished_job(redis, receiver.url("/x", host="localhost"))
    _drain(_sender(make_settings, redis, webhook_allow=""), 5)
    [entry] = deliveries(redis, by_name)
    assert entry["outcome"] == "refused" and "non-public" in entry["error"] and receiver.received == []
    # allowed receiver, which redirects to the cloud metadata address: the redirect is refused
    receiver.plans["/hop"] = [Step(307, location="http://169.254.169.254/latest/meta-data/")]
    hop = _finished_job(redis, receiver.url("/hop"))
    _drain(_sender(make_settings, redis), 5)
    [entry] = deliveries(redis, hop)
    assert entry["outcome"] == "refused" and "169.254.169.254" in entry["error"] and len(receiver.at("/hop")) == 1
    # a redirect to an allowed address is followed (307 keeps the POST)
    receiver.plans["/moved"] = [Step(308, location="/here")]
    moved = _finished_job(redis, receiver.url("/moved"))
    _drain(_sender(make_settings, redis), 5)
    assert [d["outcome"] for d in deliveries(redis, moved)] == ["delivered"] and len(receiver.at("/here")) == 1


def test_events_are_filtered_and_progress_is_throttled(make_settings, redis, receiver) -> None:
    jobs = JobStore(redis, 3600)
    job_id = uuid.uuid4().hex
    jobs.create(job_id, "c" * 16, "animate", {}, WebhookSpec(receiver.url("/p"), ("progress", "canceled")))
    for i in range(5):  # within the throttle: one progress event
        jobs.progress(job_id, "stylizing", i / 10)
    jobs.mark_running(job_id, "w")
    jobs.mark_succeeded(job_id, {})  # not subscribed
    quiet = uuid.uuid4().hex
    jobs.create(quiet, "c" * 16, "stylize", {})  # no webhook: nothing due, ever
    jobs.progress(quiet, "load", 0.1)
    jobs.mark_canceled(quiet)
    _drain(_sender(make_settings, redis), 5)
    assert [r.headers["X-AgileGAN-Event"] for r in receiver.at("/p")] == ["progress"]
    assert not redis.exists(progress_sent_key(quiet))


def test_the_service_calls_back_without_waiting_for_a_slow_receiver(
    make_client, make_settings, start_worker, receiver
) -> None:
    """The real flow: API → worker → its sender threads. Three jobs with a receiver that takes 3 s per
    delivery: the jobs finish one after another at the worker's pace; the deliveries come after."""
    settings = {"webhook_allow": LOOPBACK, "webhook_timeout_s": 5.0}
    client = make_client(**settings)
    start_worker(make_settings(**settings), queues="stylize")
    receiver.plans["/slow"] = [Step(200, sleep_s=3.0)]
    ids = []
    for _ in range(3):
        response = post_photo(client, size=256, webhook=receiver.url("/slow"))
        assert response.status_code == 202 and response.json()["webhook"]["url"] == receiver.url("/slow")
        ids.append(response.json()["id"])
    done = [wait_for(client, job_id, timeout=60) for job_id in ids]
    got = receiver.wait("/slow", 3, timeout=60)
    first_answered = min(r.at for r in got) + 3.0
    assert max(d["finished_at"] for d in done) < first_answered  # no job waited for a delivery
    secret = client.get("/v1/whoami", headers=auth()).json()["webhook_secret"]
    assert all(verify(secret, r.headers["X-AgileGAN-Signature"], r.body) for r in got)
    assert {json.loads(r.body)["id"] for r in got} == set(ids)
    deadline = time.time() + 20
    while time.time() < deadline:
        shown = client.get(f"/v1/jobs/{ids[0]}", headers=auth()).json()["webhook"]
        if shown["deliveries"]:
            break
        time.sleep(0.2)
    assert shown["events"] == ["completed", "failed", "canceled"]
    assert shown["deliveries"][0]["outcome"] == "delivered" and shown["deliveries"][0]["seconds"] >= 2.9


def test_webhook_fields_and_secrets_are_checked(make_client) -> None:
    client = make_client()
    cases = {
        ("ftp://example.com/hook", "completed"): "invalid_webhook",
        ("http://127.0.0.1:9/hook", "completed"): "webhook_refused",  # a private literal, no setting
        ("http://[::1]/hook", "completed"): "webhook_refused",
        ("https://example.com/hook", "done"): "invalid_webhook_events",
    }
    for (url, events), code in cases.items():
        response = post_photo(client, webhook=url, webhook_events=events)
        assert response.status_code == 422 and response.json()["code"] == code, (url, response.text)
    first = client.get("/v1/whoami", headers=auth()).json()["webhook_secret"]
    assert first.startswith("whsec_") and client.get("/v1/whoami", headers=auth()).json()["webhook_secret"] == first
    chosen = "my-own-secret-0123456789"
    put = client.put("/v1/whoami/webhook-secret", data={"secret": chosen}, headers=auth())
    assert put.json()["webhook_secret"] == chosen
    assert client.get("/v1/whoami", headers=auth()).json()["webhook_secret"] == chosen
    assert client.put("/v1/whoami/webhook-secret", data={"secret": "short"}, headers=auth()).status_code == 422
    key_id = client.get("/v1/whoami", headers=auth()).json()["key_id"]
    assert client.post(f"/v1/keys/{key_id}/webhook-secret", headers=auth(CLIENT_KEY)).status_code == 403
    rotated = client.post(f"/v1/keys/{key_id}/webhook-secret", headers=auth(OPERATOR_KEY)).json()["webhook_secret"]
    assert rotated != chosen and client.get("/v1/whoami", headers=auth()).json()["webhook_secret"] == rotated
