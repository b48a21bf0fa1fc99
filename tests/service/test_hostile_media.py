"""Hostile media on every upload endpoint is a typed 4xx, never a 500, and a zip bomb is never inflated
(issue 22, findings 2–4): /v1/animate, /v1/styles and /v1/directions, through the real app, Redis and
dlib; a frame the API's header check cannot see is refused by the worker as a permanent error."""

from __future__ import annotations

import pytest

from tests.reliability import media_cases as cases
from tests.service.conftest import OPERATOR_KEY, auth, wait_for


def _animate(client, video: bytes, **fields: object):
    data = {"style": "demo", "format": "zip", **{k: str(v) for k, v in fields.items()}}
    return client.post("/v1/animate", files={"video": ("in.zip", video)}, data=data, headers=auth())


@pytest.mark.parametrize("case", list(cases.ANIMATE_CASES))
def test_hostile_frame_zips_on_animate_are_typed_refusals(make_client, case: str) -> None:
    factory, codes = cases.ANIMATE_CASES[case]
    response = _animate(make_client(), factory())
    assert 400 <= response.status_code < 500 and response.json()["code"] in codes, (case, response.text)
    assert "/" not in response.json()["message"].replace("/v1/", ""), response.json()["message"]  # no server path


def test_animate_form_refusals_say_what_is_wrong(make_client) -> None:
    client = make_client()
    video = cases.zip_of({"frame-00000.png": cases.png(64, 64)})
    nan = _animate(client, video, fps="nan")
    assert nan.status_code == 422 and "finite" in nan.json()["message"], nan.text  # not "must be ≤ 120"
    portrait = (cases.FACES / "obama.jpg").read_bytes()
    files = {"video": ("in.zip", video), "portrait": ("p.jpg", portrait)}
    capped = make_client(max_upload_bytes=len(portrait) - 1).post(
        "/v1/animate", files=files, data={"style": "demo", "mode": "retarget", "fps": "10"}, headers=auth()
    )
    assert capped.status_code == 413 and capped.json()["code"] == "payload_too_large", capped.text  # the image cap


@pytest.mark.parametrize("make_zip", [cases.encrypted_entry, cases.corrupt_deflate], ids=["encrypted", "corrupt"])
def test_corrupt_and_encrypted_exemplars_are_refused_per_file(make_client, make_zip) -> None:
    client = make_client(min_exemplars=4)
    photo = (cases.FACES / "obama.jpg").read_bytes()
    archive = make_zip("bad.jpg", photo)
    styles = client.post(
        "/v1/styles",
        files={"archive": ("x.zip", archive)},
        data={"name": "hostile"},
        headers=auth(OPERATOR_KEY),
    )
    assert styles.status_code == 422 and styles.json()["code"] == "too_few_exemplars", styles.text
    (row,) = styles.json()["files"]
    assert row["file"] == "bad.jpg" and row["reason"] in ("encrypted_entry", "invalid_archive"), row
    directions = client.post(
        "/v1/directions",
        files={"positive": ("p.zip", archive), "negative": ("n.zip", archive)},
        data={"name": "hostile"},
        headers=auth(OPERATOR_KEY),
    )
    assert 400 <= directions.status_code < 500, directions.text
    garbage = client.post(
        "/v1/styles",
        files={"archive": ("x.zip", cases.garbage_after_magic())},
        data={"name": "garbage"},
        headers=auth(OPERATOR_KEY),
    )
    assert garbage.status_code == 422 and garbage.json()["code"] == "invalid_archive", garbage.text


def test_a_frame_only_the_worker_can_see_fails_the_job_once_with_its_code(make_client, make_settings, start_worker):
    """The second frame's size hides behind 200 KB of ICC profile: the API accepts the zip, the worker
    decodes that frame's header and fails the job as frame_too_large on its first attempt (it was
    internal_error after 3 attempts)."""
    client = make_client()
    start_worker(make_settings(max_video_frame_pixels=1024 * 1024), queues="video")
    job = _animate(client, cases.big_frame_behind_a_long_header(2000), fps=10)
    assert job.status_code == 202, job.text
    done = wait_for(client, job.json()["id"], timeout=120)
    assert done["status"] == "failed" and done["error"]["code"] == "frame_too_large", done
    assert done["attempts"] == 1
