"""Style training across machines (issue 27): an API host, a training host and a stylize host, each with its
own data directory (the base networks only), sharing Redis and an S3 bucket (a real SeaweedFS) and nothing
else. The style's record is in Redis, so every host sees it pending, training and ready; its weights travel as
a bundle on the store."""

from __future__ import annotations

import io
import json
import shutil
import time
import uuid
from pathlib import Path

from PIL import Image

from service.platform.registry_sync import local_version
from tests.exemplar_data import exemplar_zip_bytes
from tests.s3_server import S3Server, s3_settings, s3_store
from tests.service.conftest import OPERATOR_KEY, auth, post_photo, wait_for
from tests.service.test_styles import TINY_TRAINING, wait_style


def test_a_style_trained_on_one_host_is_served_by_another(
    s3_server: S3Server, make_client, make_settings, start_worker, tiny_data_dir: Path, tmp_path: Path
) -> None:
    s3 = {"storage": "s3", "s3_endpoint_url": s3_server.endpoint, "s3_prefix": uuid.uuid4().hex, **s3_settings()}
    hosts = {name: tmp_path / name for name in ("api-host", "train-host", "gpu-host")}
    for folder in hosts.values():
        shutil.copytree(tiny_data_dir / "registry" / "base", folder / "registry" / "base")
    common = {"min_exemplars": 8, "registry_sync_s": 1.0, **s3}
    client = make_client(data_dir=hosts["api-host"], **common)
    start_worker(make_settings(data_dir=hosts["train-host"], **common), queues="train")
    start_worker(make_settings(data_dir=hosts["gpu-host"], **common), queues="stylize")

    # 1. The upload: accepted by the API host, which has no folder for the style, and lists it at once.
    created = client.post(
        "/v1/styles",
        files={"archive": ("style.zip", exemplar_zip_bytes(), "application/zip")},
        data={"name": "Remote Poster", "config": json.dumps({**TINY_TRAINING, "eval_every": 2})},
        headers=auth(OPERATOR_KEY),
    )
    assert created.status_code == 202, created.text
    listed = client.get("/v1/styles/remote-poster", headers=auth(OPERATOR_KEY)).json()
    assert listed["status"] in ("pending", "training"), listed
    seen = set()
    deadline = time.time() + 120
    while time.time() < deadline:  # the training host's status changes, seen by the API host
        body = client.get("/v1/styles/remote-poster", headers=auth(OPERATOR_KEY)).json()
        seen.add(body["status"])
        if body["status"] == "training" and body.get("preview"):  # drawn on the training host
            preview = client.get("/v1/styles/remote-poster/preview", headers=auth(OPERATOR_KEY))
            assert preview.status_code == 200 and Image.open(io.BytesIO(preview.content)).size == (4 * 64, 2 * 64)
            seen.add("preview")
        if body["status"] in ("ready", "failed"):
            break
        time.sleep(0.1)
    ready = wait_style(client, "remote-poster")
    assert ready["status"] == "ready" and ready["training"]["steps"] == 6, ready["error"]
    assert "training" in seen, seen

    # 2. Served by the stylize host, which pulls the bundle (weights and style.json, checked) on its first job.
    job = post_photo(client, style="remote-poster", size=256).json()
    done = wait_for(client, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    gpu_style = hosts["gpu-host"] / "registry" / "styles" / "remote-poster"
    assert (gpu_style / "model.safetensors").is_file()
    assert local_version(hosts["gpu-host"] / "registry", "styles/remote-poster")
    assert json.loads((gpu_style / "style.json").read_text())["status"] == "ready"
    preview = client.get("/v1/styles/remote-poster/preview", headers=auth(OPERATOR_KEY))
    assert preview.status_code == 200  # the training host's copy, or the API host's pulled bundle

    # 3. The exemplars are gone from the bucket; the training host's own data directory held none. The
    #    preview the training host drew is there for APIs that have not pulled the bundle.
    bucket = s3_store(s3_server.endpoint, s3["s3_prefix"])
    assert list(bucket.list("style-uploads/")) == []
    assert Image.open(io.BytesIO(bucket.get("style-previews/remote-poster.png"))).size == (4 * 64, 2 * 64)
    assert not (hosts["api-host"] / "style-uploads" / "remote-poster").exists()

    # 4. Retired on the API host: the stylize host refuses it at once (the record), before any sync pass.
    assert client.delete("/v1/styles/remote-poster", headers=auth(OPERATOR_KEY)).json()["status"] == "retired"
    assert post_photo(client, style="remote-poster").json()["code"] == "unknown_style"
