"""Hardening findings 7 and 8: admitting stylize jobs is atomic under parallel requests.

- The queue cap: with the cap at 5, 12 parallel POSTs used to get 11 × 202 (every request checked the
  depth before any had enqueued). Now exactly 5 are admitted and the rest get 503 `queue_full`.
- Idempotency: 3 parallel POSTs with one `Idempotency-Key` used to make 3 jobs; now they share one.
  A key whose job record has expired used to replay a `queued` job with `created_at: 0` that then
  answered 404; now it is a fresh request.

Real API process (uvicorn), real Redis, no worker: every admitted job stays queued.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
from redis import Redis

from service.platform.auth import digest
from service.platform.redis_keys import idempotency_key as idem_key
from tests.service.conftest import CLIENT_KEY, FACES, auth

PHOTO = (FACES / "obama.jpg").read_bytes()


def _post(base: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/stylize",
        files={"image": ("obama.jpg", PHOTO)},
        data={"style": "demo"},
        headers={**auth(), **(headers or {})},
        timeout=60,
    )


def _parallel(n: int, call) -> list[httpx.Response]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: call(), range(n)))


def test_parallel_posts_never_overshoot_the_queue_cap(make_settings, start_api, redis: Redis) -> None:
    base = start_api(make_settings(max_queue_depth=5))
    answers = _parallel(12, lambda: _post(base))
    codes = sorted(r.status_code for r in answers)
    assert codes == [202] * 5 + [503] * 7, codes
    assert {r.json()["code"] for r in answers if r.status_code == 503} == {"queue_full"}
    assert all(r.headers["retry-after"] for r in answers if r.status_code == 503)
    assert redis.llen("rq:queue:stylize") == 5
    # refused requests left no upload and no job record behind
    admitted = {r.json()["id"] for r in answers if r.status_code == 202}
    records = {k.decode().rsplit(":", 1)[1] for k in redis.scan_iter("agilegan:job:*")}
    assert records == admitted


def test_parallel_posts_with_one_idempotency_key_make_one_job(make_settings, start_api, redis: Redis) -> None:
    base = start_api(make_settings())
    answers = _parallel(3, lambda: _post(base, {"Idempotency-Key": "order-42"}))
    assert [r.status_code for r in answers] == [202] * 3
    ids = {r.json()["id"] for r in answers}
    assert len(ids) == 1
    assert redis.llen("rq:queue:stylize") == 1
    (job_id,) = ids
    assert httpx.get(f"{base}/v1/jobs/{job_id}", headers=auth(), timeout=10).json()["created_at"] > 0


def test_a_key_whose_job_expired_starts_a_new_job(make_settings, start_api, redis: Redis) -> None:
    base = start_api(make_settings())
    first = _post(base, {"Idempotency-Key": "order-43"}).json()
    redis.delete(f"agilegan:job:{first['id']}")  # the record expired (its TTL is shorter than the key's)
    again = _post(base, {"Idempotency-Key": "order-43"})
    assert again.status_code == 202
    body = again.json()
    assert body["id"] != first["id"] and body["created_at"] > 0
    assert httpx.get(f"{base}/v1/jobs/{body['id']}", headers=auth(), timeout=10).status_code == 200
    stored = json.loads(redis.get(idem_key(digest(CLIENT_KEY)[:16], "order-43")))
    assert stored["job_id"] == body["id"]  # the key now names the new job
