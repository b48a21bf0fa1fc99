"""Style training end to end: upload exemplars → train queue → ready → served by /v1/stylize."""

from __future__ import annotations

import io
import json
import shutil
import time

from PIL import Image

from tests.exemplar_data import exemplar_zip_bytes
from tests.service.conftest import CLIENT_KEY, FACES, OPERATOR_KEY, auth, post_photo, wait_for

TINY_TRAINING = {
    "max_steps": 6,
    "eval_every": 3,
    "batch_size": 2,
    "eval_samples": 4,
    "min_holdout": 2,
    "holdout_fraction": 0.25,
    "r1_every": 2,
    "pl_every": 2,
    "minutes": 5,
}


def wait_style(client, style_id: str, timeout: float = 120) -> dict:
    """The style once its training ended (a canceled style is only listed with include_deleted)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        listed = client.get("/v1/styles", params={"include_deleted": True}, headers=auth(OPERATOR_KEY)).json()
        body = next(s for s in listed["styles"] if s["id"] == style_id)
        if body["status"] in ("ready", "failed", "canceled"):
            return body
        time.sleep(0.2)
    raise TimeoutError(body)


def test_a_style_is_trained_and_served(make_client, make_settings, start_worker, tiny_data_dir) -> None:
    client = make_client(min_exemplars=8)
    start_worker(make_settings(min_exemplars=8, train_micro_batch=1))  # the worker's memory setting reaches training
    archive = exemplar_zip_bytes()
    created = client.post(
        "/v1/styles",
        files={"archive": ("style.zip", archive, "application/zip")},
        data={"name": "Poster Test", "description": "posterized portraits", "config": json.dumps(TINY_TRAINING)},
        headers=auth(OPERATOR_KEY),
    )
    assert created.status_code == 202, created.text
    body = created.json()
    assert body["id"] == "poster-test" and body["accepted"] == 12 and body["rejected"] == 2
    reasons = {f["file"]: f.get("reason") for f in body["files"] if not f["accepted"]}
    assert reasons == {"dog.jpg": "no_face", "readme.txt": "not_an_image"}
    try:
        ready = wait_style(client, "poster-test")
        assert ready["status"] == "ready", ready
        assert ready["training"]["steps"] == 6 and ready["resolution"] == 64
        report = json.loads((tiny_data_dir / "registry" / "styles" / "poster-test" / "training.json").read_text())
        assert report["micro_batch"] == 1 and report["config"]["batch_size"] == 2
        preview = client.get("/v1/styles/poster-test/preview", headers=auth(OPERATOR_KEY))
        assert preview.status_code == 200 and Image.open(io.BytesIO(preview.content)).size == (4 * 64, 2 * 64)

        # served without a worker restart, and different from the untrained base generator
        registry = tiny_data_dir / "registry"
        shutil.copytree(
            registry / "base" / "generator",
            registry / "styles" / "untrained",
            ignore=shutil.ignore_patterns("discriminator"),
        )
        (registry / "styles" / "untrained" / "style.json").write_text(json.dumps({"name": "base", "status": "ready"}))
        images = {}
        for style in ("poster-test", "untrained"):
            job = post_photo(client, style=style, size=256).json()
            assert wait_for(client, job["id"])["status"] == "succeeded"
            images[style] = client.get(f"/v1/jobs/{job['id']}/result", headers=auth()).content
        assert images["poster-test"] != images["untrained"]

        # duplicate names, too few exemplars, clients
        again = client.post(
            "/v1/styles",
            files={"archive": ("s.zip", archive)},
            data={"name": "poster test"},
            headers=auth(OPERATOR_KEY),
        )
        assert again.status_code == 409 and again.json()["code"] == "duplicate_name"
        few = client.post(
            "/v1/styles",
            files=[("files", ("a.png", _png("obama.jpg"))), ("files", ("b.jpg", (FACES / "dogs.jpg").read_bytes()))],
            data={"name": "tiny set"},
            headers=auth(OPERATOR_KEY),
        )
        assert few.status_code == 422 and few.json()["code"] == "too_few_exemplars"
        assert [f["accepted"] for f in few.json()["files"]] == [True, False]
        assert client.post("/v1/styles", data={"name": "x"}, headers=auth(CLIENT_KEY)).status_code == 403
        labelled = client.post(
            "/v1/styles",
            files=[("files", ("a.png", _png("obama.jpg")))],
            data={"name": "labelled", "labels": json.dumps({"a.png": "male"})},
            headers=auth(OPERATOR_KEY),
        )
        assert labelled.status_code == 422 and labelled.json()["files"][0]["label"] == "male"
        bad_labels = client.post(
            "/v1/styles",
            files=[("files", ("a.png", _png("obama.jpg")))],
            data={"name": "labelled", "labels": "[1]"},
            headers=auth(OPERATOR_KEY),
        )
        assert bad_labels.json()["code"] == "invalid_labels"
        bad_config = client.post(
            "/v1/styles",
            files={"archive": ("s.zip", archive)},
            data={"name": "other", "config": '{"loss": "wasserstein"}'},
            headers=auth(OPERATOR_KEY),
        )
        assert bad_config.status_code == 422 and bad_config.json()["code"] == "invalid_config"

        # retire: the style stops being served and disappears from the clients' list
        assert client.delete("/v1/styles/poster-test", headers=auth(OPERATOR_KEY)).json()["status"] == "retired"

        def listed(key: str, **params: object) -> list[str]:
            return [s["id"] for s in client.get("/v1/styles", params=params, headers=auth(key)).json()["styles"]]

        assert "poster-test" not in listed(CLIENT_KEY) and "poster-test" not in listed(OPERATOR_KEY)
        assert "poster-test" in listed(OPERATOR_KEY, include_deleted=True)
        assert "poster-test" not in listed(CLIENT_KEY, include_deleted=True)
        for key in (CLIENT_KEY, OPERATOR_KEY):  # deleted: gone from the API (hardening finding 14)
            assert client.get("/v1/styles/poster-test", headers=auth(key)).status_code == 404
        assert client.delete("/v1/styles/poster-test", headers=auth(OPERATOR_KEY)).status_code == 404
        retired = post_photo(client, style="poster-test")
        assert retired.status_code == 404 and retired.json()["code"] == "unknown_style"
    finally:
        for name in ("poster-test", "untrained"):
            shutil.rmtree(tiny_data_dir / "registry" / "styles" / name, ignore_errors=True)
        shutil.rmtree(tiny_data_dir / "style-uploads", ignore_errors=True)


def _png(name: str) -> bytes:
    out = io.BytesIO()
    Image.open(FACES / name).convert("RGB").save(out, format="PNG")
    return out.getvalue()


def test_training_can_be_canceled(make_client, make_settings, start_worker, tiny_data_dir) -> None:
    client = make_client(min_exemplars=8)
    long_run = {**TINY_TRAINING, "max_steps": 100000, "eval_every": 4}
    created = client.post(
        "/v1/styles",
        files={"archive": ("style.zip", exemplar_zip_bytes())},
        data={"name": "endless", "config": json.dumps(long_run)},
        headers=auth(OPERATOR_KEY),
    )
    assert created.status_code == 202
    try:
        start_worker(make_settings(min_exemplars=8), queues="train")  # as `make run` starts them: one per queue
        start_worker(make_settings(min_exemplars=8), queues="stylize")
        started = time.time()
        while (first := client.get("/v1/styles/endless", headers=auth(OPERATOR_KEY)).json()).get("training") is None:
            assert time.time() < started + 60
            time.sleep(0.05)
        # progress from the job's first seconds (issue 12, finding 9), before any training step
        assert time.time() - started < 5 and first["training"]["stage"] in ("loading", "aligning exemplars", "training")
        deadline = time.time() + 60
        while (progress := client.get("/v1/styles/endless", headers=auth(OPERATOR_KEY)).json())["training"]["step"] < 1:
            assert time.time() < deadline
            time.sleep(0.2)
        assert progress["status"] == "training" and progress["training"]["stage"] == "training"
        assert 0 <= progress["training"]["eta_s"] <= 60 * TINY_TRAINING.get("minutes", 60)
        # a portrait stylized while the style trains (it used to wait behind the whole run)
        stylized = wait_for(client, post_photo(client, size=256).json()["id"], timeout=60)
        assert stylized["status"] == "succeeded"
        assert client.get("/v1/styles/endless", headers=auth(OPERATOR_KEY)).json()["status"] == "training"
        # the preview shows the generator of each evaluation, not only of a new best (finding 9)
        seen = set()
        while len(seen) < 2:
            training = client.get("/v1/styles/endless", headers=auth(OPERATOR_KEY)).json()["training"]
            if training["preview_step"] is not None:
                seen.add(training["preview_step"])
                preview = client.get("/v1/styles/endless/preview", headers=auth(OPERATOR_KEY))
                assert preview.status_code == 200 and Image.open(io.BytesIO(preview.content)).size == (4 * 64, 2 * 64)
            assert time.time() < deadline
            time.sleep(0.1)
        assert all(s % 4 == 0 for s in seen)
        assert client.delete("/v1/styles/endless", headers=auth(OPERATOR_KEY)).json()["status"] == "canceling"
        done = wait_style(client, "endless")
        assert done["status"] == "canceled"
        assert not (tiny_data_dir / "registry" / "styles" / "endless" / "model.safetensors").exists()
        assert post_photo(client, style="endless").status_code == 404  # deleted: no such style
        assert not (tiny_data_dir / "style-uploads" / "endless").exists()  # the exemplars went with it
    finally:
        shutil.rmtree(tiny_data_dir / "registry" / "styles" / "endless", ignore_errors=True)
        shutil.rmtree(tiny_data_dir / "style-uploads", ignore_errors=True)


def test_training_survives_a_worker_restart(make_client, make_settings, start_worker, tiny_data_dir) -> None:
    """SIGTERM: the job checkpoints and re-queues itself; the next worker resumes from the checkpoint."""
    import signal

    client = make_client(min_exemplars=8)
    run = {**TINY_TRAINING, "max_steps": 100000, "eval_every": 1000, "checkpoint_every": 2}
    created = client.post(
        "/v1/styles",
        files={"archive": ("style.zip", exemplar_zip_bytes())},
        data={"name": "restart", "config": json.dumps(run)},
        headers=auth(OPERATOR_KEY),
    )
    assert created.status_code == 202
    try:
        first = start_worker(make_settings(min_exemplars=8), queues="train")

        def step() -> int:
            training = client.get("/v1/styles/restart", headers=auth(OPERATOR_KEY)).json().get("training")
            return training["step"] if training else 0

        deadline = time.time() + 60
        while step() < 6:
            assert time.time() < deadline
            time.sleep(0.2)
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(timeout=60)
        stopped_at = step()
        state = json.loads(
            (tiny_data_dir / "registry" / "styles" / "restart" / "train_state" / "state.json").read_text()
        )
        assert state["step"] >= 6  # checkpointed on the way out
        assert client.get("/v1/styles/restart", headers=auth(OPERATOR_KEY)).json()["status"] == "pending"

        start_worker(make_settings(min_exemplars=8), queues="train")
        deadline = time.time() + 60
        while step() == stopped_at:  # the progress hash still holds the first worker's last report
            assert time.time() < deadline
            time.sleep(0.1)
        assert step() >= state["step"]  # resumed from the checkpoint, not restarted from step 0
        client.delete("/v1/styles/restart", headers=auth(OPERATOR_KEY))
        assert wait_style(client, "restart")["status"] == "canceled"
    finally:
        shutil.rmtree(tiny_data_dir / "registry" / "styles" / "restart", ignore_errors=True)
        shutil.rmtree(tiny_data_dir / "style-uploads", ignore_errors=True)


def test_style_upload_limits(make_client) -> None:
    client = make_client(min_exemplars=8, max_style_files=3, max_style_upload_bytes=200_000)
    many = [("files", (f"{i}.png", b"x")) for i in range(4)]
    r = client.post("/v1/styles", files=many, data={"name": "many"}, headers=auth(OPERATOR_KEY))
    assert r.status_code == 413 and r.json()["code"] == "too_many_files"
    big = client.post(
        "/v1/styles",
        files={"archive": ("s.zip", exemplar_zip_bytes())},
        data={"name": "big"},
        headers=auth(OPERATOR_KEY),
    )
    assert big.status_code == 413 and big.json()["code"] == "payload_too_large"
    broken = client.post(
        "/v1/styles",
        files={"archive": ("s.zip", b"PK not really")},
        data={"name": "broken"},
        headers=auth(OPERATOR_KEY),
    )
    assert broken.status_code == 422 and broken.json()["code"] == "invalid_archive"


def test_jobs_queued_for_a_retired_style_fail_with_a_code(
    make_client, make_settings, start_worker, tiny_data_dir
) -> None:
    registry = tiny_data_dir / "registry" / "styles"
    shutil.copytree(registry / "demo", registry / "soon-gone")
    client = make_client()
    try:
        queued = post_photo(client, style="soon-gone", size=256).json()  # no worker yet: it waits
        assert client.delete("/v1/styles/soon-gone", headers=auth(OPERATOR_KEY)).json()["status"] == "retired"
        start_worker(make_settings(), queues="stylize")
        failed = wait_for(client, queued["id"])
        assert failed["status"] == "failed" and failed["error"]["code"] == "style_unavailable"
    finally:
        shutil.rmtree(registry / "soon-gone", ignore_errors=True)


def test_malformed_form_fields_are_422s(make_client) -> None:
    """Hardening finding 10: a deeply nested `config` raised RecursionError, a 500; a wrongly typed one
    was accepted and would have failed the training run. Every malformed field is a typed 422."""
    client = make_client(min_exemplars=8)
    nested = "[" * 5000 + "]" * 5000
    cases = {
        ("config", nested): "invalid_config",
        ("config", '{"a": ' * 3000 + "1" + "}" * 3000): "invalid_config",
        ("config", '{"g_lr": "fast"}'): "invalid_config",
        ("config", '{"batch_size": 4.5}'): "invalid_config",
        ("config", '{"max_steps": true}'): "invalid_config",
        ("config", '{"minutes": NaN}'): "invalid_config",
        ("config", "{" * 70000): "invalid_config",
        ("labels", nested): "invalid_labels",
        ("labels", '{"a.png": ["male"]}'): "invalid_labels",
    }
    for (field, value), code in cases.items():
        r = client.post(
            "/v1/styles",
            files=[("files", ("a.png", b"x"))],
            data={"name": "fields", field: value},
            headers=auth(OPERATOR_KEY),
        )
        assert r.status_code == 422 and r.json()["code"] == code, (field, value[:40], r.status_code, r.text[:200])


def test_a_canceled_style_frees_its_uploads_and_its_name(make_client, tiny_data_dir) -> None:
    """Hardening finding 12: a canceled style kept its uploads and answered 409 to its name forever."""
    client = make_client(min_exemplars=8)

    def create() -> dict:
        r = client.post(
            "/v1/styles",
            files={"archive": ("style.zip", exemplar_zip_bytes())},
            data={"name": "second-try", "config": json.dumps(TINY_TRAINING)},
            headers=auth(OPERATOR_KEY),
        )
        assert r.status_code == 202, r.text
        return r.json()

    uploads = tiny_data_dir / "style-uploads" / "second-try"
    try:
        first = create()  # no worker runs: it stays queued
        assert uploads.is_dir()
        again = client.post(
            "/v1/styles", files=[("files", ("a.png", b"x"))], data={"name": "second-try"}, headers=auth(OPERATOR_KEY)
        )
        assert again.status_code == 409 and again.json()["code"] == "duplicate_name"  # pending: taken
        assert client.delete("/v1/styles/second-try", headers=auth(OPERATOR_KEY)).json()["status"] == "canceled"
        assert not uploads.exists()
        assert client.get("/v1/styles/second-try", headers=auth(OPERATOR_KEY)).status_code == 404
        second = create()
        assert second["job_id"] != first["job_id"] and uploads.is_dir()
        fresh = client.get("/v1/styles/second-try", headers=auth(OPERATOR_KEY)).json()
        assert fresh["status"] == "pending" and fresh["training"] is None
    finally:
        shutil.rmtree(tiny_data_dir / "registry" / "styles" / "second-try", ignore_errors=True)
        shutil.rmtree(tiny_data_dir / "style-uploads", ignore_errors=True)
