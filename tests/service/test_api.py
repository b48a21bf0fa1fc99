"""The HTTP API end to end on a real Redis with real worker processes and tiny models."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from tests.service.conftest import CLIENT_KEY, FACES, OPERATOR_KEY, OTHER_KEY, auth, post_photo, wait_for


def test_importing_the_service_does_not_import_torch() -> None:
    """The API process loads neither torch nor anything of models/ or workers/: its image holds `service/`
    only (docker/api.Dockerfile). Every route module and the app factory's whole start-up are imported."""
    code = (
        "import sys, service.api.app, service.api.routes.jobs, service.platform.registry; "
        "import service.portrait.media.alignment, service.portrait.media.images; "
        "from service.platform.settings import Settings; "
        "service.api.app.create_app(Settings(api_keys='x' * 16 + ':client')).openapi(); "
        "assert 'torch' not in sys.modules, 'torch was imported'; "
        "ours = sorted(m for m in sys.modules if m.split('.')[0] in ('models', 'workers')); "
        "assert not ours, ours"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_stylize_end_to_end(make_client, make_settings, start_worker) -> None:
    client = make_client()
    start_worker(make_settings())
    accepted = post_photo(client, size=256, format="png")
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert accepted.headers["location"] == f"/v1/jobs/{body['id']}" and accepted.headers["retry-after"]
    assert body["status"] == "queued" and body["options"]["size"] == 256
    done = wait_for(client, body["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["width"] == 256 and done["result"]["branch"] is None
    assert set(done["result"]["timings"]) >= {"wait", "align", "generate", "store"}
    result = client.get(f"/v1/jobs/{body['id']}/result", headers=auth())
    assert result.status_code == 200 and result.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(result.content))
    assert image.size == (256, 256) and image.mode == "RGB" and np.asarray(image).std() > 1

    # other formats and sizes
    jpeg = post_photo(client, size=512, format="jpeg").json()
    webp = post_photo(client, size=1024, format="webp").json()
    for job, fmt, size in ((jpeg, "jpeg", 512), (webp, "webp", 1024)):
        assert wait_for(client, job["id"])["status"] == "succeeded"
        r = client.get(f"/v1/jobs/{job['id']}/result", headers=auth())
        assert r.headers["content-type"] == f"image/{fmt}"
        assert Image.open(io.BytesIO(r.content)).format == fmt.upper()
        assert Image.open(io.BytesIO(r.content)).size == (size, size)

    # output=full: pasted back into the photo at its original size
    full = post_photo(client, "obama.jpg", output="full", format="png").json()
    assert wait_for(client, full["id"])["status"] == "succeeded"
    pasted = Image.open(io.BytesIO(client.get(f"/v1/jobs/{full['id']}/result", headers=auth()).content))
    assert pasted.size == Image.open(FACES / "obama.jpg").size

    # the same request twice gives identical bytes (const noise, deterministic crop and encoding)
    again = post_photo(client, size=256, format="png").json()
    assert wait_for(client, again["id"])["status"] == "succeeded"
    assert client.get(f"/v1/jobs/{again['id']}/result", headers=auth()).content == result.content

    # metrics saw the requests and the job stages
    metrics = client.get("/metrics").text
    assert 'agilegan_http_requests_total{method="POST",route="/v1/stylize",status="202"}' in metrics
    assert 'agilegan_job_stage_seconds_count{stage="generate"}' in metrics
    assert 'agilegan_queue_depth{queue="stylize"} 0' in metrics


def test_bad_photos_are_refused_at_once_with_a_code(make_client, redis) -> None:
    client = make_client(max_upload_bytes=2_000_000, max_pixels=4_000_000)
    start = time.perf_counter()
    dogs = post_photo(client, "dogs.jpg")
    assert dogs.status_code == 422 and dogs.json()["code"] == "no_face"
    assert time.perf_counter() - start < 5
    assert dogs.json()["request_id"] == dogs.headers["x-request-id"]
    small = post_photo(client, "obama-240p.jpg")
    assert small.status_code == 422 and small.json()["code"] == "face_too_small"
    gif = io.BytesIO()
    Image.new("RGB", (64, 64)).save(gif, format="GIF")
    unsupported = post_photo(client, gif.getvalue())
    assert unsupported.status_code == 415 and unsupported.json()["code"] == "unsupported_format"
    big = post_photo(client, b"\xff" * 2_100_000)
    assert big.status_code == 413 and big.json()["code"] == "payload_too_large"
    bomb = Image.new("RGB", (2500, 2000))
    buf = io.BytesIO()
    bomb.save(buf, format="PNG")
    pixels = post_photo(client, buf.getvalue())
    assert pixels.status_code == 413 and pixels.json()["code"] == "image_too_large"
    truncated = post_photo(client, (FACES / "obama.jpg").read_bytes()[:20_000])
    assert truncated.status_code == 422 and truncated.json()["code"] == "invalid_image"
    assert post_photo(client, style="nope").json()["code"] == "unknown_style"
    assert post_photo(client, style="nope").status_code == 404
    wrong = post_photo(client, size=300)
    assert wrong.status_code == 422 and wrong.json()["code"] == "invalid_request"
    branch = post_photo(client, attribute="male")
    assert branch.status_code == 422 and branch.json()["code"] == "unknown_attribute"
    missing = client.post("/v1/stylize", data={"style": "demo"}, headers=auth())
    assert missing.status_code == 422 and missing.json()["code"] == "invalid_request"
    assert redis.llen("rq:queue:stylize") == 0  # nothing was queued


def test_chunked_upload_over_the_limit_is_cut_off(make_client) -> None:
    """A chunked (no Content-Length) multipart upload is cut off as soon as it passes the limit."""
    client = make_client(max_upload_bytes=100_000)

    def chunks():
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        for _ in range(500):
            yield b"x" * 10_000

    r = client.post(
        "/v1/stylize", content=chunks(), headers={**auth(), "content-type": "multipart/form-data; boundary=b"}
    )
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def test_auth_roles_and_ownership(make_client, make_settings, start_worker) -> None:
    client = make_client()
    assert client.get("/v1/styles").status_code == 401
    assert client.get("/v1/styles").json()["code"] == "unauthorized"
    assert "missing API key" in client.get("/v1/styles").json()["message"]
    wrong = client.get("/v1/styles", headers=auth("wrong-key-but-long-enough"))
    assert wrong.status_code == 401 and wrong.json()["message"] == "unknown API key"
    for header in (CLIENT_KEY, f"Token {CLIENT_KEY}", "Bearer "):  # a raw key, another scheme: the format hint
        raw = client.get("/v1/styles", headers={"Authorization": header})
        assert raw.status_code == 401 and "must be 'Bearer KEY'" in raw.json()["message"], header
        assert CLIENT_KEY not in raw.text
    styles = client.get("/v1/styles", headers=auth()).json()["styles"]
    assert [s["id"] for s in styles] == ["demo"] and "random-weights" in styles[0]["labels"]
    assert client.get("/v1/styles/demo", headers=auth()).json()["resolution"] == 64
    assert client.get("/v1/styles/nope", headers=auth()).status_code == 404
    assert client.get("/v1/jobs", headers=auth()).json() == []
    assert client.get("/v1/whoami", headers=auth()).json()["role"] == "client"
    assert client.get("/v1/whoami", headers=auth(OPERATOR_KEY)).json()["role"] == "operator"

    job = post_photo(client).json()
    assert [j["id"] for j in client.get("/v1/jobs", headers=auth()).json()] == [job["id"]]  # a client's own
    assert client.get("/v1/jobs", headers=auth(OTHER_KEY)).json() == []
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth(OTHER_KEY)).status_code == 404  # not yours
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth(OPERATOR_KEY)).status_code == 200  # operator: all
    assert [j["id"] for j in client.get("/v1/jobs", headers=auth(OPERATOR_KEY)).json()] == [job["id"]]
    assert client.get("/v1/jobs/0123", headers=auth()).status_code == 404
    not_ready = client.get(f"/v1/jobs/{job['id']}/result", headers=auth())
    assert not_ready.status_code == 202 and not_ready.json()["code"] == "not_ready"


def test_rate_limit_and_queue_full(make_client) -> None:
    limited = make_client(rate_limit_per_minute=2)
    # refused before any work (hardening finding 15: these used to use up the budget)
    for _ in range(3):
        assert post_photo(limited, style="no-such-style").status_code == 404
        assert post_photo(limited, size=333).status_code == 422
    assert post_photo(limited, idempotency_key="once").status_code == 202
    assert post_photo(limited, idempotency_key="once").status_code == 202  # a replay: no new work
    assert post_photo(limited).status_code == 202
    third = post_photo(limited)
    assert third.status_code == 429 and third.json()["code"] == "rate_limited"
    assert 1 <= int(third.headers["retry-after"]) <= 61
    assert post_photo(limited, key=OTHER_KEY).status_code == 202  # per key

    full = make_client(max_queue_depth=3)  # three jobs are queued (no worker runs)
    refused = post_photo(full)
    assert refused.status_code == 503 and refused.json()["code"] == "queue_full"
    assert refused.headers["retry-after"]


def test_idempotency_key(make_client) -> None:
    client = make_client()
    first = post_photo(client, idempotency_key="order-17")
    again = client.post(
        "/v1/stylize",
        files={"image": ("a.png", _astronaut_png())},
        data={"style": "demo"},
        headers={**auth(), "Idempotency-Key": "order-17"},
    )
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    other = post_photo(client, idempotency_key="order-17", size=512)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert post_photo(client, idempotency_key="order-17", key=OTHER_KEY).json()["id"] != first.json()["id"]


def _astronaut_png() -> bytes:
    from skimage import data as skdata

    buf = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buf, format="PNG")
    return buf.getvalue()


def test_cancel_a_queued_job(make_client, make_settings, start_worker) -> None:
    client = make_client()
    job = post_photo(client).json()
    canceled = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth())
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    keep = post_photo(client).json()
    start_worker(make_settings())
    assert wait_for(client, keep["id"])["status"] == "succeeded"
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth()).json()["status"] == "canceled"
    assert client.get(f"/v1/jobs/{job['id']}/result", headers=auth()).json()["code"] == "job_canceled"


def test_a_deleted_job_is_gone(make_client, make_settings, start_worker, tiny_data_dir) -> None:
    """DELETE removes a job (canceled first when unfinished): afterwards it is 404 with nothing left of it
    in storage (hardening finding 14: deleted resources stayed visible)."""
    client = make_client()
    queued = post_photo(client).json()
    assert client.delete(f"/v1/jobs/{queued['id']}", headers=auth(OTHER_KEY)).status_code == 404  # not theirs
    assert client.delete(f"/v1/jobs/{queued['id']}", headers=auth()).status_code == 204
    done = post_photo(client).json()
    start_worker(make_settings())
    assert wait_for(client, done["id"])["status"] == "succeeded"
    assert (tiny_data_dir / "results" / f"{done['id']}.png").is_file()
    assert client.delete(f"/v1/jobs/{done['id']}", headers=auth()).status_code == 204
    for job in (queued, done):
        for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/result"):
            gone = client.get(path, headers=auth())
            assert gone.status_code == 404 and gone.json()["code"] == "unknown_job"
        assert client.delete(f"/v1/jobs/{job['id']}", headers=auth()).status_code == 404
        assert not (tiny_data_dir / "inputs" / job["id"]).exists()
    assert not (tiny_data_dir / "results" / f"{done['id']}.png").exists()


def test_readiness_is_per_role(make_client, make_settings, start_worker) -> None:
    """Hardening finding 13: /readyz was 503 forever without a train worker; now a stylize-only
    deployment is ready, each queue's workers are reported, and a training role asks for `train`."""
    client = make_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["redis"] == "ok"
    assert not_ready.json()["reasons"] == ["no live worker on the 'stylize' queue"]
    start_worker(make_settings(), queues="stylize")
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["reasons"] == []
    queues = ready.json()["queues"]
    assert queues["stylize"]["workers"] == 1 and queues["stylize"]["required"]
    assert queues["train"] == {"workers": 0, "depth": 0, "required": False}
    assert client.get("/readyz", params={"queues": "stylize,train"}).status_code == 503  # nobody on "train"
    assert client.get("/readyz", params={"queues": "gpu"}).json()["code"] == "invalid_request"
    video = client.get("/readyz", params={"queues": "video"})  # issue 22: was a 422 though the README lists it
    assert video.status_code == 503 and video.json()["reasons"] == ["no live worker on the 'video' queue"]
    trainer = make_client(ready_queues="train")
    assert trainer.get("/readyz").status_code == 503
    start_worker(make_settings(), queues="train")
    assert trainer.get("/readyz").status_code == 200
    assert "/readyz" in client.get("/openapi.json").json()["paths"]


def test_openapi_docs_work_offline_and_declare_the_bearer_scheme(make_client) -> None:
    """Hardening finding 14: /docs loaded Swagger UI from a CDN, and the schema had no security scheme,
    so /docs could not send a key."""
    client = make_client()
    page = client.get("/docs")
    assert page.status_code == 200 and "cdn" not in page.text and "http" not in page.text.split("<body>")[1]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = client.get(f"/docs/assets/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000 and f"/docs/assets/{asset}" in page.text
    spec = client.get("/openapi.json").json()
    assert "/v1/stylize" in spec["paths"] and "/v1/jobs/{job_id}/result" in spec["paths"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key: `Authorization: Bearer KEY`",
    }
    assert spec["paths"]["/v1/stylize"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_a_new_style_is_served_without_restarting_the_worker(
    make_client, make_settings, start_worker, tiny_data_dir
) -> None:
    import shutil

    client = make_client()
    start_worker(make_settings())
    assert post_photo(client, style="fresh").status_code == 404
    registry = tiny_data_dir / "registry" / "styles"
    shutil.copytree(registry / "demo", registry / "fresh")
    try:
        job = post_photo(client, style="fresh", size=256).json()
        assert wait_for(client, job["id"])["status"] == "succeeded"
    finally:
        shutil.rmtree(registry / "fresh")


def test_two_workers_share_the_stylize_queue(make_client, make_settings, start_worker, redis) -> None:
    client = make_client()
    first, second = start_worker(make_settings(), queues="stylize"), start_worker(make_settings(), queues="stylize")
    jobs = [post_photo(client, size=256).json()["id"] for _ in range(8)]
    done = [wait_for(client, job) for job in jobs]
    assert all(d["status"] == "succeeded" for d in done)
    workers = {redis.hget(f"agilegan:job:{job}", "worker").decode() for job in jobs}
    assert workers == {f"{os.uname().nodename}.{w.proc.pid}" for w in (first, second)}  # both completed jobs


def test_attribute_auto_uses_the_registry_classifier(make_client, make_settings, start_worker, tiny_data_dir) -> None:
    import json
    import shutil

    import torch

    from models.networks.attribute_classifier import AttributeClassifier
    from models.networks.attribute_generator import AttributeAwareGenerator
    from models.weights import checkpoints
    from service.portrait.configs import AttributeClassifierConfig, AttributeGeneratorConfig

    registry = tiny_data_dir / "registry"
    source = checkpoints.load(registry / "base" / "generator")
    dual = AttributeAwareGenerator.from_generator(source, AttributeGeneratorConfig(source.config, split_resolution=16))
    checkpoints.save(registry / "styles" / "dual", dual)
    (registry / "styles" / "dual" / "style.json").write_text(json.dumps({"name": "dual", "status": "ready"}))
    client = make_client()
    start_worker(make_settings())
    try:
        info = client.get("/v1/styles/dual", headers=auth()).json()
        assert info["attribute_branches"] == ["female", "male"] and info["default_branch"] == "female"
        first = wait_for(client, post_photo(client, style="dual", size=256).json()["id"])
        assert (first["result"]["branch"], first["result"]["branch_source"]) == ("female", "default")
        says_male = AttributeClassifier(AttributeClassifierConfig(labels=("female", "male"), style_dim=32))
        with torch.no_grad():
            says_male.linear.weight.zero_()
            says_male.linear.bias.copy_(torch.tensor([-3.0, 3.0]))
        checkpoints.save(registry / "base" / "attribute-classifier", says_male)
        auto = wait_for(client, post_photo(client, style="dual", size=256).json()["id"])
        assert (auto["result"]["branch"], auto["result"]["branch_source"]) == ("male", "classifier")
        asked = wait_for(client, post_photo(client, style="dual", size=256, attribute="female").json()["id"])
        assert (asked["result"]["branch"], asked["result"]["branch_source"]) == ("female", "request")
    finally:
        shutil.rmtree(registry / "styles" / "dual", ignore_errors=True)
        shutil.rmtree(registry / "base" / "attribute-classifier", ignore_errors=True)


def test_failed_authentications_are_limited_per_address(make_client) -> None:
    """Hardening finding 15: 2,000 wrong keys in 9 s were all answered 401; now an address that fails
    too often gets 429 with Retry-After, while a valid key from it still works."""
    client = make_client(failed_auth_per_minute=5)
    if time.time() % 60 > 55:  # failures are counted per clock minute: start well inside one
        time.sleep(61 - time.time() % 60)
    wrong = {"Authorization": "Bearer not-a-key-000000000"}
    assert [client.get("/v1/styles", headers=wrong).status_code for _ in range(5)] == [401] * 5
    limited = client.get("/v1/styles", headers=wrong)
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert client.get("/v1/jobs/" + "0" * 32).status_code == 429  # no key at all counts too
    assert client.get("/v1/styles", headers=auth()).status_code == 200


def test_forwarded_addresses_are_believed_only_from_configured_proxies(make_settings, start_api) -> None:
    """Issue 22: uvicorn believed X-Forwarded-For from loopback, so a local client rotating it reset its
    failed-login budget. Now only AGILEGAN_TRUSTED_PROXIES are believed."""
    import httpx2 as httpx

    if time.time() % 60 > 50:  # failures are counted per clock minute: start well inside one
        time.sleep(61 - time.time() % 60)
    wrong = {"Authorization": "Bearer not-a-key-000000000"}
    base = start_api(make_settings(failed_auth_per_minute=3))
    codes = [
        httpx.get(f"{base}/v1/styles", headers={**wrong, "X-Forwarded-For": f"10.0.0.{i}"}).status_code
        for i in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429], codes
    behind = start_api(make_settings(failed_auth_per_minute=3, trusted_proxies="127.0.0.1"))
    codes = [
        httpx.get(f"{behind}/v1/styles", headers={**wrong, "X-Forwarded-For": f"10.0.1.{i}"}).status_code
        for i in range(5)
    ]
    assert codes == [401] * 5, codes  # behind a configured proxy, each client address has its own budget


def test_the_schema_matches_what_the_api_does(make_client) -> None:
    """Hardening finding 14 (found by schemathesis): a 405 named one of a path's methods in Allow, a
    nullable form field sent as "null" was refused, error answers were undocumented."""
    client = make_client()
    r = client.put(f"/v1/jobs/{'0' * 32}", headers=auth())
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    assert r.headers["allow"] == "DELETE, GET"
    nulls = post_photo(client, structure="null", idempotency_key="null")
    assert nulls.status_code == 202 and nulls.json()["options"]["structure"] == 0
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if path.startswith("/v1/"):
                assert {"401", "404", "422", "503"} <= set(op["responses"]), (method, path)
