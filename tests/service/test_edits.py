"""Latent editing through the service (issue 13): `edits` on /v1/stylize, its 422s, GET /v1/directions,
and a direction fitted by a queued job from two photo archives; real Redis, worker, dlib and tiny models."""

from __future__ import annotations

import json

from tests.exemplar_data import labelled_photo_zips
from tests.service.conftest import OPERATOR_KEY, auth, post_photo, wait_for


def _stylize(client, edits: object | None = None, **fields: object) -> dict:
    extra = {"edits": json.dumps(edits)} if edits is not None else {}
    response = post_photo(client, "obama.jpg", size=256, **extra, **fields)
    assert response.status_code == 202, response.text
    return response.json()


def test_edits_on_stylize(make_client, make_settings, start_worker, directions) -> None:
    client = make_client()
    listed = {d["id"]: d for d in client.get("/v1/directions", headers=auth()).json()["directions"]}
    assert listed["sefa"]["count"] == 4 and listed["sefa"]["kind"] == "sefa" and "demo" in listed["sefa"]["styles"]
    assert listed["alien"]["styles"] == []  # no style is served through that mapping
    assert client.get("/v1/directions/sefa", headers=auth()).json()["alpha_range"] == [-4, 4]
    assert client.get("/v1/directions/nope", headers=auth()).json()["code"] == "unknown_direction"

    # the typed refusals, before anything is queued
    for edits, code in [
        ({"nope": 1}, "unknown_direction"),
        ({"alien": 1}, "direction_mismatch"),
        ({"sefa": 4.5}, "edit_out_of_range"),
        ({"sefa:4": 1}, "edit_out_of_range"),
        ({"sefa": {"alpha": 1, "layers": "0-99"}}, "invalid_edit_layers"),
        ({"sefa": {"alpha": 1, "layers": "x"}}, "invalid_edit_layers"),
        ({"sefa": {"alpha": 1, "layers": "0-99999999"}}, "invalid_edit_layers"),  # issue 22: bounded by meaning
        ({"sefa": {"alpha": 1, "layers": "1," * 200 + "1"}}, "invalid_edit_layers"),
        ({"sefa": "big"}, "invalid_edits"),
        ({"sefa": True}, "invalid_edits"),
        ({"sefa": {"alpha": 1, "scale": 2}}, "invalid_edits"),
        ([1, 2], "invalid_edits"),
        ({f"sefa:{i % 4}": 1 for i in range(9)} | {f"x{i}": 1 for i in range(9)}, "invalid_edits"),
    ]:
        response = post_photo(client, "obama.jpg", edits=json.dumps(edits))
        assert response.status_code == 422 and response.json()["code"] == code, (edits, response.text)
    nested = post_photo(client, "obama.jpg", edits="[" * 3000)
    assert nested.status_code == 422 and nested.json()["code"] == "invalid_edits"

    start_worker(make_settings())
    jobs = {
        "plain": _stylize(client),
        "zero": _stylize(client, {"sefa:1": 0}),
        "edited": _stylize(client, {"sefa:1": 3.0, "sefa": -1.5}),
        "layered": _stylize(client, {"sefa:1": {"alpha": 3.0, "layers": "6-9"}}),
        "lighter": _stylize(client, {"sefa:1": 3.0, "sefa": -1.5}, strength=0.5),  # edits compose with strength
    }
    results = {}
    for name, job in jobs.items():
        done = wait_for(client, job["id"])
        assert done["status"] == "succeeded", done
        results[name] = (done, client.get(f"/v1/jobs/{job['id']}/result", headers=auth()).content)
    assert results["zero"][1] == results["plain"][1]  # α = 0 is the unedited image, byte for byte
    assert results["edited"][1] != results["plain"][1] and results["layered"][1] not in (
        results["plain"][1],
        results["edited"][1],
    )
    recorded = results["edited"][0]["result"]["edits"]
    assert recorded == [
        {"direction": "sefa", "index": 1, "alpha": 3.0, "layers": None},
        {"direction": "sefa", "index": 0, "alpha": -1.5, "layers": None},
    ]
    assert results["layered"][0]["result"]["edits"][0]["layers"] == [6, 7, 8, 9]
    lighter = results["lighter"]
    assert lighter[0]["result"]["strength"] == 0.5 and lighter[0]["result"]["edits"] == recorded
    assert lighter[1] not in (results["edited"][1], results["plain"][1])


def test_a_direction_fitted_by_a_job_edits_stylized_portraits(
    make_client, make_settings, start_worker, directions
) -> None:
    client = make_client()
    positive, negative = labelled_photo_zips()
    files = {"positive": ("pos.zip", positive), "negative": ("neg.zip", negative)}
    assert client.post("/v1/directions", files=files, data={"name": "smile"}, headers=auth()).status_code == 403
    few = client.post(
        "/v1/directions",
        files={"positive": ("pos.zip", positive), "negative": ("neg.zip", _empty_zip())},
        data={"name": "smile"},
        headers=auth(OPERATOR_KEY),
    )
    assert few.status_code == 422 and few.json()["code"] == "too_few_examples"
    created = client.post("/v1/directions", files=files, data={"name": "smile"}, headers=auth(OPERATOR_KEY))
    assert created.status_code == 202, created.text
    body = created.json()
    assert body["positive"] == 6 and body["negative"] == 6
    start_worker(make_settings(), queues="train")
    done = wait_for(client, body["job_id"], key=OPERATOR_KEY, timeout=120)
    assert done["status"] == "succeeded", done
    assert 0 <= done["result"]["accuracy"] <= 1 and len(done["result"]["layer_accuracy"]) == 10
    smile = client.get("/v1/directions/smile", headers=auth()).json()
    assert smile["kind"] == "supervised" and "demo" in smile["styles"] and smile["alpha_range"] == [-3, 3]
    assert smile["w_space"] == client.get("/v1/directions/sefa", headers=auth()).json()["w_space"]
    again = client.post("/v1/directions", files=files, data={"name": "smile"}, headers=auth(OPERATOR_KEY))
    assert again.status_code == 409 and again.json()["code"] == "duplicate_name"

    start_worker(make_settings(), queues="stylize")
    plain, edited = _stylize(client), _stylize(client, {"smile": 2.5})
    images = [
        client.get(f"/v1/jobs/{wait_for(client, j['id'])['id']}/result", headers=auth()).content
        for j in (plain, edited)
    ]
    assert images[0] != images[1]
    assert client.delete("/v1/directions/smile", headers=auth()).status_code == 403
    assert client.delete("/v1/directions/smile", headers=auth(OPERATOR_KEY)).json()["deleted"] is True
    assert post_photo(client, "obama.jpg", edits='{"smile": 1}').json()["code"] == "unknown_direction"


def _empty_zip() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", b"no photos")
    return buf.getvalue()
