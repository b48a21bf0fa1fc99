"""Hardening findings 2 and 3: hostile uploads cost the API neither memory nor its event loop.

A real API process (`agilegan serve`) is measured by its peak resident memory (VmHWM), which the old
code grew by the size of every body it buffered, and by how fast /healthz answers meanwhile.
"""

from __future__ import annotations

import io
import threading
import time
import zipfile
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.service.conftest import FACES, OPERATOR_KEY, auth, free_port, serve_api, stop_process

pytestmark = pytest.mark.serial  # timing or memory bounds: run alone (Makefile), not beside other tests

MB = 1024 * 1024


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@pytest.fixture
def api(make_settings, tmp_path: Path):
    settings = make_settings(max_style_upload_bytes=600 * MB, min_exemplars=4)
    port = free_port()
    proc = serve_api(settings, port, tmp_path / "api.log")
    yield proc, f"http://127.0.0.1:{port}"
    stop_process(proc)


def _stream(total: int, head: bytes = b"", tail: bytes = b""):
    yield head
    block = b"\0" * MB
    for _ in range(total // MB):
        yield block
    yield tail


def _post(base: str, path: str, body, headers: dict[str, str]) -> int:
    try:
        return httpx.post(f"{base}{path}", content=body, headers=headers, timeout=120).status_code
    except httpx.HTTPError:
        return 0  # the server answered and closed while we were still sending: fine, nothing was read


def test_unauthenticated_bodies_are_refused_before_they_are_read(api) -> None:
    proc, base = api
    before = peak_rss_mb(proc.pid)
    headers = {"content-type": "multipart/form-data; boundary=b"}
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(_post(base, "/v1/styles", _stream(300 * MB), headers)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(answers) <= {401, 0}, answers
    assert peak_rss_mb(proc.pid) - before < 64  # the old code buffered 3 × 300 MB
    r = httpx.post(f"{base}/v1/styles", data={"name": "x"}, timeout=10)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


def test_a_large_authorized_upload_is_spooled_to_disk_not_memory(api) -> None:
    proc, base = api
    before = peak_rss_mb(proc.pid)
    head = b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nbig\r\n'
    head += b'--b\r\nContent-Disposition: form-data; name="archive"; filename="a.zip"\r\n\r\n'
    body = _stream(400 * MB, head, b"\r\n--b--\r\n")
    headers = {**auth(OPERATOR_KEY), "content-type": "multipart/form-data; boundary=b"}
    r = httpx.post(f"{base}/v1/styles", content=body, headers=headers, timeout=120)
    assert r.status_code == 422 and r.json()["code"] == "invalid_archive", r.text
    assert peak_rss_mb(proc.pid) - before < 96  # not 400 MB (or twice that)


def _archive() -> bytes:
    """A zip with 4 portraits, two unsafe paths, a 300 MB and a 10 MB entry of zeros (1000× compressed)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i, name in enumerate(("obama.jpg", "biden.jpg", "obama-240p.jpg", "alex-lacamoire.png")):
            z.writestr(f"ok/{i}-{name}", (FACES / name).read_bytes())
        z.writestr("/etc/abs.jpg", (FACES / "obama.jpg").read_bytes())
        z.writestr("a/../../escape.jpg", (FACES / "biden.jpg").read_bytes())
        with z.open("bomb.jpg", "w", force_zip64=True) as f:
            for _ in range(300):
                f.write(b"\0" * MB)
        z.writestr("dense.jpg", b"\0" * 10 * MB)  # under the per-image cap, but 1000× compressed
    return buf.getvalue()


def test_zip_bombs_and_unsafe_paths_are_refused_off_the_event_loop(api) -> None:
    proc, base = api
    data = _archive()
    assert len(data) < 2 * MB
    slowest, done = [0.0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            start = time.perf_counter()
            httpx.get(f"{base}/healthz", timeout=30)
            slowest[0] = max(slowest[0], time.perf_counter() - start)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    before = peak_rss_mb(proc.pid)
    watcher.start()
    try:
        r = httpx.post(
            f"{base}/v1/styles",
            files={"archive": ("styles.zip", data, "application/zip")},
            data={"name": "bombed"},
            headers=auth(OPERATOR_KEY),
            timeout=120,
        )
    finally:
        done.set()
        watcher.join()
    assert r.status_code == 422 and r.json()["code"] == "too_few_exemplars", r.text  # 3 faces: 4 needed
    reasons = {f["file"]: f.get("reason") for f in r.json()["files"]}
    assert reasons["/etc/abs.jpg"] == "unsafe_path"
    assert reasons["a/../../escape.jpg"] == "unsafe_path"
    assert reasons["bomb.jpg"] == "file_too_large"  # larger than one image may be: never inflated
    assert reasons["dense.jpg"] == "suspicious_compression"
    assert sum(1 for f in r.json()["files"] if f["accepted"]) == 3  # obama-240p is too small a face
    assert peak_rss_mb(proc.pid) - before < 96  # the old code inflated the 300 MB entry in memory
    assert slowest[0] < 2.0  # the old code unzipped inside the event loop (/healthz waited 12.7 s)
