"""The web console (/console) in real headless Chromium (Debian's chromium + chromium-driver, driven by
selenium), against a real API server, workers, Redis and tiny models.

Screenshots of each page at 1280 px and 375 px go to `test-artifacts/console/` (AGILEGAN_TEST_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.exemplar_data import FACES, exemplar_zip_bytes
from tests.service.conftest import CLIENT_KEY, OPERATOR_KEY, auth
from tests.service.test_styles import TINY_TRAINING

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("AGILEGAN_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and DRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (make test installs them)",
)


@pytest.fixture
def browser(tmp_path: Path):
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not look for a driver online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,900",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait(predicate, timeout: float = 60, what: str = "") -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 (element not there yet, stale, …)
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(what)


def by(driver, testid: str):
    return driver.find_element("css selector", f'[data-testid="{testid}"]')


def shoot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "console").mkdir(exist_ok=True)
    for width in (1280, 375):
        driver.set_window_size(width, 900)
        time.sleep(0.2)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(max(height, 600), 4000))
        driver.save_screenshot(str(ARTIFACTS / "console" / f"{name}-{width}.png"))
    driver.set_window_size(1280, 900)


def sign_in(driver, base: str, key: str, role: str) -> None:
    driver.get(f"{base}/console")
    by(driver, "api-key").send_keys(key)
    by(driver, "save-key").click()
    wait(lambda: role in driver.find_element("id", "who").text, what=f"signed in as {role}")


def test_a_client_stylizes_a_photo_and_sees_errors(make_settings, start_api, start_worker, browser, directions) -> None:
    settings = make_settings()
    base = start_api(settings)
    start_worker(settings, queues="stylize")
    browser.get(f"{base}/console")
    assert "enter an API key" in by(browser, "style-select").text  # not an empty list before a key
    assert not browser.find_element("id", "pair").is_displayed()  # no stray "input" caption before a job
    _fits(browser, 375, "signed out")
    sign_in(browser, base, CLIENT_KEY, "client")
    assert not by(browser, "styles-tab").is_displayed()  # no operator controls for a client
    wait(
        lambda: (
            "demo"
            in [o.get_attribute("value") for o in by(browser, "style-select").find_elements("css selector", "option")]
        )
    )
    # each direction of the style's sets is a slider (the set of another w space is not offered)
    sliders = wait(
        lambda: by(browser, "edit-sliders").find_elements("css selector", "input[type=range]"), 30, "sliders"
    )
    assert [s.get_attribute("data-edit") for s in sliders] == ["sefa", "sefa:1", "sefa:2", "sefa:3"]
    browser.execute_script(
        "arguments[0].value = '2'; arguments[0].dispatchEvent(new Event('input'))", sliders[1]
    )  # fmt: skip
    by(browser, "photo-input").send_keys(str(FACES / "obama.jpg"))
    browser.find_element("id", "size").send_keys("256")
    by(browser, "stylize-button").click()
    image = by(browser, "result-image")
    wait(
        lambda: image.is_displayed() and browser.execute_script("return arguments[0].naturalWidth", image) > 0,
        90,
        "result",
    )
    assert browser.execute_script("return arguments[0].naturalWidth", image) == 256
    assert "succeeded" in by(browser, "job-status").text
    sent = httpx.get(f"{base}/v1/jobs", headers=auth()).json()[0]["options"]["edits"]
    assert [(e["direction"], e["index"], e["alpha"]) for e in sent] == [("sefa", 1, 2.0)]
    _fits(browser, 375, "try, with a result")
    shoot(browser, "try")

    # a photo without a face: the API's own message, not a generic failure
    expected = httpx.post(
        f"{base}/v1/stylize", files={"image": ("dogs.jpg", (FACES / "dogs.jpg").read_bytes())},
        data={"style": "demo"}, headers=auth(),
    ).json()  # fmt: skip
    by(browser, "photo-input").send_keys(str(FACES / "dogs.jpg"))
    by(browser, "stylize-button").click()
    shown = wait(lambda: by(browser, "error-message").text, 30, "error")
    assert expected["message"] in shown and expected["code"] in shown

    browser.find_element("id", "jobs-tab").click()
    rows = wait(lambda: browser.find_elements("css selector", "#jobs-body tr"), 30, "jobs")
    assert len(rows) == 1 and "succeeded" in rows[0].text  # the refused photo made no job
    _fits(browser, 375, "jobs")
    shoot(browser, "jobs")
    _only_same_origin(browser, base)
    _no_failed_requests(browser)


def test_an_operator_trains_a_style_and_watches_it(
    make_settings, start_api, start_worker, browser, tmp_path: Path, tiny_data_dir: Path
) -> None:
    settings = make_settings(min_exemplars=8)
    base = start_api(settings)
    start_worker(settings, queues="train")
    (tmp_path / "exemplars.zip").write_bytes(exemplar_zip_bytes())
    try:
        sign_in(browser, base, OPERATOR_KEY, "operator")
        tab = by(browser, "styles-tab")
        assert tab.is_displayed()
        tab.click()
        by(browser, "style-name").send_keys("Console Test")
        by(browser, "exemplar-input").send_keys(str(tmp_path / "exemplars.zip"))
        browser.find_element("id", "train-config").send_keys(json.dumps({**TINY_TRAINING, "max_steps": 12}))
        by(browser, "train-button").click()
        report = wait(lambda: browser.find_elements("css selector", "#upload-report tbody tr"), 60, "upload report")
        assert len(report) == 14 and any("no_face" in r.text for r in report)
        chart = by(browser, "training-chart")
        wait(lambda: chart.find_elements("css selector", "polyline"), 120, "chart")
        preview = by(browser, "preview-image")
        wait(
            lambda: preview.is_displayed() and browser.execute_script("return arguments[0].naturalWidth", preview) > 0,
            120,
        )
        wait(lambda: "ready" in browser.find_element("id", "training-status").text, 120, "ready")
        assert "stopped: max_steps" in browser.find_element("id", "training-status").text
        _fits(browser, 375, "styles")
        shoot(browser, "styles")
        _only_same_origin(browser, base)
        _no_failed_requests(browser)
    finally:
        shutil.rmtree(tiny_data_dir / "registry" / "styles" / "console-test", ignore_errors=True)


def _only_same_origin(browser, base: str) -> None:
    """Every request the console made (those of documents loaded from the API) went to the API's own
    origin or stayed in the page (blob:, data:). The browser's own start page (chrome://) is not ours."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent" and message["params"].get("documentURL", "").startswith(
            base
        ):
            urls.append(message["params"]["request"]["url"])
    assert urls and all(u.startswith((base + "/", "blob:", "data:")) for u in urls), [
        u for u in urls if not u.startswith((base, "blob:", "data:"))
    ]


def _fits(browser, width: int, where: str) -> None:
    """At `width` CSS px the page reflows: nothing is wider than the viewport (no horizontal scrollbar),
    and the Structure field is wide enough for its placeholder."""
    browser.set_window_size(width, 900)
    time.sleep(0.2)
    try:
        inner = browser.execute_script("return window.innerWidth")
        overflow = browser.execute_script(
            "const w = document.documentElement.clientWidth;"
            "return [...document.querySelectorAll('body *')].filter((e) => e.getClientRects().length"
            " && e.getBoundingClientRect().right > w + 0.5 && !e.closest('table')).map((e) => e.id || e.tagName)"
            " .concat([...document.querySelectorAll('table')].filter((t) => t.getBoundingClientRect().right > w + 0.5)"
            " .map((t) => t.id || t.tagName))"
        )
        scroll = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert inner == width, inner
        assert scroll <= 0 and not overflow, (where, scroll, overflow)
        structure = browser.find_element("id", "structure")
        fits = not structure.is_displayed() or browser.execute_script(
            "const e = arguments[0]; const c = document.createElement('canvas').getContext('2d');"
            "c.font = getComputedStyle(e).font; return c.measureText(e.placeholder).width <= e.clientWidth",
            structure,
        )
        assert fits, (where, structure.get_attribute("placeholder"))
    finally:
        browser.set_window_size(1280, 900)


def _no_failed_requests(browser) -> None:
    """The browser's console shows no request for something that is not there (a style's missing preview
    and /favicon.ico were 404s); refusals the test provokes (a 422 for a photo without a face) are fine."""
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert not [e for e in errors if "status of 404" in e or "favicon" in e or "Content Security Policy" in e], errors


def test_the_docs_render_under_their_content_security_policy(make_settings, start_api, browser) -> None:
    """/docs runs Swagger UI's inline start-up script by its hash; the page renders and the browser
    reports no policy violation. Pages cannot be framed (clickjacking)."""
    base = start_api(make_settings())
    for path in ("/docs", "/console/", "/v1/styles"):
        headers = httpx.get(f"{base}{path}").headers
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
    assert "'unsafe-inline'" not in httpx.get(f"{base}/docs").headers["content-security-policy"].split("style-src")[0]
    browser.get(f"{base}/docs")
    title = wait(lambda: browser.find_elements("css selector", ".swagger-ui .info .title"), 30, "swagger ui")
    assert "AgileGAN" in title[0].text
    wait(lambda: browser.find_elements("css selector", ".opblock"), 30, "operations")
    _no_failed_requests(browser)


def test_a_group_photo_shows_its_faces_and_a_job_its_webhook_deliveries(
    make_settings, start_api, start_worker, browser
) -> None:
    """Issue 28's console: every face of a group result listed and outlined on the image; a job's webhook
    deliveries (a real receiver on 127.0.0.1, allowed by the setting) in the jobs tab."""
    from tests.webhook_receiver import Receiver

    receiver = Receiver()
    try:
        settings = make_settings(webhook_allow="127.0.0.1/32")
        base = start_api(settings)
        start_worker(settings, queues="stylize")
        sign_in(browser, base, CLIENT_KEY, "client")
        wait(lambda: "demo" in by(browser, "style-select").text, 30, "styles")
        browser.find_element("id", "faces").send_keys("every face (group)")
        assert browser.find_element("id", "output").get_attribute("value") == "full"
        browser.find_element("id", "webhook").send_keys(receiver.url("/hook"))
        by(browser, "photo-input").send_keys(str(FACES / "two_people.jpg"))
        browser.find_element("id", "size").send_keys("256")
        by(browser, "stylize-button").click()
        rows = wait(lambda: by(browser, "faces-table").find_elements("css selector", "tbody tr"), 90, "faces table")
        assert len(rows) == 2 and all("stylized" in r.text for r in rows)
        boxes = by(browser, "faces-overlay").find_elements("css selector", "rect.stylized")
        assert len(boxes) == 2 and by(browser, "faces-overlay").is_displayed()
        image = by(browser, "result-image")
        assert browser.execute_script("return arguments[0].naturalWidth", image) == 1126  # the whole photo
        _fits(browser, 375, "try, a group photo")
        shoot(browser, "group")

        receiver.wait("/hook", 1, timeout=30)
        browser.find_element("id", "jobs-tab").click()

        def delivered() -> bool:
            browser.find_element("css selector", "#jobs-body tr button").click()
            return "delivered" in by(browser, "deliveries-table").text

        wait(delivered, 30, "a delivered webhook in the job's details")
        assert receiver.url("/hook") in browser.find_element("id", "job-detail-webhook").text
        assert len(by(browser, "job-faces-table").find_elements("css selector", "tbody tr")) == 2
        _fits(browser, 375, "jobs, a job's details")
        shoot(browser, "job-detail")
        _only_same_origin(browser, base)
        _no_failed_requests(browser)
    finally:
        receiver.close()
