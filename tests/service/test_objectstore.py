"""The object store (service/platform/objectstore.py, issue 27) against a real S3-compatible server (SeaweedFS,
started here on 127.0.0.1) and the local directory: the same contract for both; an unreachable store is
`StoreUnavailable` (the API answers 503 `unavailable`); and a stylize job between an API and a worker that
share no folder at all, only Redis and the store."""

from __future__ import annotations

import io
import os
import shutil
import signal
import time
import uuid
import zipfile
from pathlib import Path
from urllib.request import urlopen

import pytest
from PIL import Image

from service.platform.objectstore import LocalStore, ObjectMissing, StoreUnavailable
from tests.s3_server import S3Server, s3_settings, s3_store
from tests.service.conftest import auth, post_photo, wait_for


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "local":
        return LocalStore(tmp_path)
    s3 = s3_store(request.getfixturevalue("s3_server").endpoint, uuid.uuid4().hex)
    s3.ensure_bucket()
    return s3


def test_the_store_contract(store) -> None:
    store.put("inputs/a/upload", b"photo")
    store.put("results/a.png", b"one")
    store.put("results/a.png", b"two")  # replaced whole
    store.put("results/b.jpeg", b"three")
    assert store.get("inputs/a/upload") == b"photo" and store.get("results/a.png") == b"two"
    assert store.exists("results/b.jpeg") and not store.exists("results/c.png")
    with pytest.raises(ObjectMissing):
        store.get("results/c.png")
    listed = {info.key: info.size for info in store.list("results/")}
    assert listed == {"results/a.png": 3, "results/b.jpeg": 5}
    assert all(abs(info.modified - time.time()) < 300 for info in store.list("results/"))
    assert [info.key for info in store.list("results/a.")] == ["results/a.png"]
    assert store.delete_prefix("inputs/a/") == 1 and not store.exists("inputs/a/upload")
    store.delete("results/a.png")
    store.delete("results/a.png")  # a missing object: no error
    assert [info.key for info in store.list("results/")] == ["results/b.jpeg"]


def test_files_and_streams_through_the_store(store, tmp_path: Path) -> None:
    """put_file / get_file / open of both stores; on S3 a file above MULTIPART_BYTES goes up in parts
    (its ETag says so) and comes back byte for byte."""
    from service.platform.objectstore import MULTIPART_BYTES

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(MULTIPART_BYTES + 12345))
    store.put_file("results/v.mp4", big)
    back = tmp_path / "back" / "v.mp4"
    back.parent.mkdir()
    store.get_file("results/v.mp4", back)
    assert back.read_bytes() == big.read_bytes() and [p.name for p in back.parent.iterdir()] == ["v.mp4"]
    stream = store.open("results/v.mp4")
    chunks = list(stream.chunks)
    assert stream.size == big.stat().st_size and b"".join(chunks) == big.read_bytes() and len(chunks) > 1
    if not isinstance(store, LocalStore):
        etag = store.client.head_object(Bucket=store.bucket, Key=store.prefix + "results/v.mp4")["ETag"]
        assert etag.strip('"').endswith("-2"), etag  # a multipart upload of two parts
    for call in (lambda: store.open("results/none.mp4"), lambda: store.get_file("results/none", tmp_path / "x")):
        with pytest.raises(ObjectMissing):
            call()
    assert not (tmp_path / "x").exists()


def test_an_unreachable_store_is_unavailable_not_missing() -> None:
    store = s3_store("http://127.0.0.1:9", "x", timeout_s=1.0)  # nothing listens on the discard port
    started = time.monotonic()
    for call in (lambda: store.get("results/a.png"), lambda: store.put("results/a.png", b"x")):
        with pytest.raises(StoreUnavailable):
            call()
    assert time.monotonic() - started < 20


def test_the_api_answers_503_while_the_store_is_down(make_client) -> None:
    client = make_client(storage="s3", s3_endpoint_url="http://127.0.0.1:9", s3_timeout_s=1.0, **s3_settings())
    response = post_photo(client, size=256)
    assert response.status_code == 503 and response.json()["code"] == "unavailable", response.text
    assert response.headers["Retry-After"] == "5"


def test_api_and_worker_share_only_redis_and_the_store(
    s3_server: S3Server, make_client, make_settings, start_worker, tiny_data_dir: Path, tmp_path: Path
) -> None:
    """Two "machines": separate data directories (each with its own copy of the registry), one Redis, one
    bucket. The upload goes from the API to the store, the worker reads it there and stores the result,
    the API serves it from there; nothing is written to either data directory's inputs or results."""
    s3 = {"storage": "s3", "s3_endpoint_url": s3_server.endpoint, "s3_prefix": uuid.uuid4().hex, **s3_settings()}
    api_dir, worker_dir = tmp_path / "api-host", tmp_path / "gpu-host"
    for folder in (api_dir, worker_dir):
        shutil.copytree(tiny_data_dir / "registry", folder / "registry")
    client = make_client(data_dir=api_dir, **s3)
    start_worker(make_settings(data_dir=worker_dir, **s3), queues="stylize")
    job = post_photo(client, size=256, format="jpeg").json()
    done = wait_for(client, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    result = client.get(f"/v1/jobs/{job['id']}/result", headers=auth())
    assert result.status_code == 200 and result.headers["content-type"] == "image/jpeg"
    assert int(result.headers["content-length"]) == len(result.content)  # streamed from the bucket
    image = Image.open(io.BytesIO(result.content))
    assert (image.format, image.size) == ("JPEG", (256, 256))
    bucket = s3_store(s3_server.endpoint, s3["s3_prefix"])
    assert bucket.get(f"results/{job['id']}.jpeg") == result.content
    for folder in (api_dir, worker_dir):
        assert not (folder / "inputs").exists() and not (folder / "results").exists(), folder
    # deleting the job deletes its objects
    assert client.delete(f"/v1/jobs/{job['id']}", headers=auth()).status_code == 204
    assert list(bucket.list("inputs/")) == [] and list(bucket.list("results/")) == []


def test_a_style_upload_is_visible_only_once_published(s3_server: S3Server, tmp_path: Path) -> None:
    """Exemplars go up file by file, the manifest last: an upload cut off before its manifest is
    invisible to the training worker (ObjectMissing, a permanent `input_missing`)."""
    from service.platform.storage import Storage

    storage = Storage(tmp_path, s3_store(s3_server.endpoint, uuid.uuid4().hex))
    storage.store.put("style-uploads/cut/0000", b"half")  # a publish that died before its manifest
    with pytest.raises(ObjectMissing):
        storage.read_style_upload("cut")
    staging = storage.style_staging_dir()
    for i, data in enumerate((b"a", b"skipped", b"c")):
        storage.stage_file(staging, i, data)
    storage.publish_staging(staging, "mystyle", [0, 2], {"files": [{"name": "a"}, {"name": "c"}]})
    assert storage.read_style_upload("mystyle") == ({"files": [{"name": "a"}, {"name": "c"}]}, [b"a", b"c"])
    assert not staging.exists() and not (tmp_path / "style-uploads" / "mystyle").exists()  # nothing kept here
    storage.delete_style_upload("mystyle")
    assert list(storage.store.list("style-uploads/mystyle/")) == []


def test_a_video_job_between_machines_that_share_only_the_store(
    s3_server: S3Server, make_client, make_settings, start_worker, tiny_data_dir: Path, tmp_path: Path
) -> None:
    from tests.service.test_animate import _post, _video

    s3 = {"storage": "s3", "s3_endpoint_url": s3_server.endpoint, "s3_prefix": uuid.uuid4().hex, **s3_settings()}
    api_dir, worker_dir = tmp_path / "api-host", tmp_path / "gpu-host"
    for folder in (api_dir, worker_dir):
        shutil.copytree(tiny_data_dir / "registry", folder / "registry")
    client = make_client(data_dir=api_dir, **s3)
    start_worker(make_settings(data_dir=worker_dir, video_chunk_frames=4, **s3), queues="video")
    job = _post(client, _video(tmp_path / "in.mp4", 8), format="mp4", output="aligned")
    assert job.status_code == 202, job.text
    assert list((api_dir / "video").glob("*")) == []  # the upload went to the store, not this machine
    done = wait_for(client, job.json()["id"], timeout=120)
    assert done["status"] == "succeeded" and done["result"]["frames"] == 8, done
    result = client.get(f"/v1/jobs/{done['id']}/result", headers=auth())
    assert result.status_code == 200 and result.content[4:8] == b"ftyp"  # an MP4 from the bucket
    assert list((worker_dir / "video").glob("*")) == []  # its work files went with the job
    bucket = s3_store(s3_server.endpoint, s3["s3_prefix"])
    assert list(bucket.list("video/")) == [] and [i.key for i in bucket.list("results/")] == [
        f"results/{done['id']}.mp4"
    ]


def test_a_video_resumes_on_another_machine_and_its_result_is_a_presigned_url(
    s3_server: S3Server, make_client, make_settings, start_worker, tiny_data_dir: Path, tmp_path: Path
) -> None:
    """A video worker killed mid-video on one host; the job goes on, on another host (its own data directory),
    from the chunks the first one checkpointed on the store. The API hands out a presigned URL of the result."""
    from tests.service.test_animate import _post, _video

    s3 = {"storage": "s3", "s3_endpoint_url": s3_server.endpoint, "s3_prefix": uuid.uuid4().hex, **s3_settings()}
    hosts = [tmp_path / name for name in ("api-host", "gpu-1", "gpu-2")]
    for folder in hosts:
        shutil.copytree(tiny_data_dir / "registry", folder / "registry")
    client = make_client(data_dir=hosts[0], result_delivery="presigned", presign_ttl_s=60, **s3)
    job_id = _post(client, _video(tmp_path / "in.mp4", 40, audio=False), format="zip", output="aligned").json()["id"]
    bucket = s3_store(s3_server.endpoint, s3["s3_prefix"])
    doomed = start_worker(make_settings(data_dir=hosts[1], video_chunk_frames=4, **s3), queues="video")
    deadline = time.time() + 120
    while not bucket.exists(f"video/{job_id}/work/chunk-00001.npz"):
        assert time.time() < deadline and doomed.proc.poll() is None
        time.sleep(0.05)
    os.kill(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait()
    checkpointed = len([i for i in bucket.list(f"video/{job_id}/work/") if "chunk-" in i.key])
    assert 2 <= checkpointed < 10, checkpointed  # killed mid-video
    start_worker(make_settings(data_dir=hosts[2], video_chunk_frames=4, **s3), queues="video")
    done = wait_for(client, job_id, timeout=180)
    assert done["status"] == "succeeded" and done["result"]["chunks_resumed"] >= checkpointed, done
    redirect = client.get(f"/v1/jobs/{job_id}/result", headers=auth(), follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"].startswith(s3_server.endpoint)
    with urlopen(redirect.headers["location"], timeout=10) as response:  # noqa: S310 - the test's store
        archive = response.read()
        assert f'filename="{job_id}.zip"' in response.headers["Content-Disposition"]
    assert len(zipfile.ZipFile(io.BytesIO(archive)).namelist()) == 40
    assert list(bucket.list("video/")) == [] and not (hosts[2] / "video" / job_id).exists()
