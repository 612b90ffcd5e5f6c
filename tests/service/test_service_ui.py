"""The dashboard (/ui) in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
selenium): log in with a key, watch a training job progress to ``succeeded``, its training curves, an
inference job's spike raster decoded in the page, backends with estimates, models; screenshots for the docs."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sqsnn.client import Client
from workers.spikes import unpack

pytestmark = pytest.mark.service
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium / chromedriver on PATH: apt-get install -y chromium chromium-driver (make services does)",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium at 1280x860 driven through chromedriver."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,860"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _wait(driver: Any, condition: Any, timeout: float = 120) -> Any:
    """Wait for ``condition(driver)``; the jobs table is re-rendered every 2 s, so an element found a moment
    ago may be gone: the condition is then evaluated again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (StaleElementReferenceException, NoSuchElementException)
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored).until(condition)


def _text(driver: Any, css: str) -> str | None:
    """The text of the first element matching ``css`` now (None when there is none)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e && e.textContent;", css)


def _inked(driver: Any, canvas_id: str) -> int:
    """Pixels drawn on a canvas (alpha > 0)."""
    script = (
        "const c = document.getElementById(arguments[0]);"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;"
    )
    return int(driver.execute_script(script, canvas_id))


@needs_chromium
def test_dashboard_login_jobs_curves_raster_backends_models(served, worker, train_body, browser) -> None:
    from selenium.webdriver.common.by import By

    key = served.key(f"ui-{uuid.uuid4().hex[:8]}")
    driver = browser
    driver.get(f"{served.url}/ui")
    assert driver.find_element(By.ID, "login-view").is_displayed()

    driver.find_element(By.ID, "api-key").send_keys("sqsnn_wrong-key")
    driver.find_element(By.ID, "login").click()
    _wait(driver, lambda d: "invalid API key" in d.find_element(By.ID, "login-error").text, 20)
    driver.find_element(By.ID, "api-key").clear()
    driver.find_element(By.ID, "api-key").send_keys(key)
    driver.find_element(By.ID, "login").click()
    _wait(driver, lambda d: d.find_element(By.ID, "jobs-view").is_displayed(), 20)

    with Client(served.url, key) as client:
        body = train_body(
            name="digits-ui",
            model={"hidden": [32]},
            dataset={"name": "digits", "limit_train": 600, "limit_test": 200},
            encoder={"T": 5, "p_max": 1.0},
            training={"epochs": 4},  # the trainer's defaults
        )
        job = client.submit(body)
        seen: list[str] = []

        def state_in_table(d: Any) -> bool:
            state = _text(d, f'tr[data-job-id="{job["id"]}"] td.state-cell')
            if state and (not seen or seen[-1] != state):
                seen.append(state)
            return bool(seen) and seen[-1] == "succeeded"

        # the job is seen queued or running in the table; its page then follows the event stream (it does not
        # poll) until the job has succeeded
        _wait(driver, lambda d: state_in_table(d) or seen)
        assert seen[0] in ("queued", "running"), seen
        _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-job-id="{job["id"]}"] a').click() or True)
        _wait(driver, lambda d: "following the event stream" in (_text(d, "#job-live") or ""), 20)
        _wait(driver, lambda d: _text(d, "#job-state") == "succeeded")
        _wait(driver, lambda d: "test accuracy" in (_text(d, "#job-result") or ""), 20)
        _wait(driver, lambda d: (_text(d, "#job-live") or "").startswith("event stream ended after"), 20)
        events = len(list(client.events(job["id"])))
        assert _text(driver, "#job-live") == f"event stream ended after {events} events"
        train_result = client.result(job["id"])["result"]
        assert f"{train_result['test_accuracy'] * 100:.1f}%" in (_text(driver, "#job-result") or "")
        assert driver.find_element(By.ID, "job-progress").get_attribute("value") == "1"
        assert _inked(driver, "curves") > 500 and _inked(driver, "raster") == 0
        screenshots = ROOT / "docs" / "img"
        screenshots.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshots / "dashboard-job.png"))

        model_id = train_result["model_id"]
        infer = client.submit(
            {"kind": "infer", "model_id": model_id, "inputs": {"source": "dataset", "name": "digits", "stop": 8}}
        )
        client.wait(infer["id"], timeout=120)
        infer_result = client.result(infer["id"])["result"]

    # the jobs table: both jobs with state, backend, cost and progress
    driver.get(f"{served.url}/ui#jobs")
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr")) == 2)
    _wait(driver, lambda d: state_in_table(d))
    row = _text(driver, f'tr[data-job-id="{job["id"]}"]') or ""
    assert "$0.00" in row and "100%" in row and "exact" in row
    driver.save_screenshot(str(screenshots / "dashboard.png"))

    # the inference job's page: the raster of sample 0, and the page's decoder equals workers.spikes.unpack
    driver.get(f"{served.url}/ui#job/{infer['id']}")
    _wait(driver, lambda d: d.find_element(By.ID, "raster-note").text.startswith("sample 0"), 20)
    spikes = infer_result["spikes"]
    lit = 0
    for layer in spikes["layers"]:
        bits = driver.execute_script(
            "return unpackSample(arguments[0], arguments[1], arguments[2]);",
            layer["samples"][0],
            spikes["T"],
            layer["neurons"],
        )
        ref = unpack(layer["samples"][:1], spikes["T"], layer["neurons"])[:, 0, :]  # (T, n)
        assert np.array_equal(np.array(bits).reshape(spikes["T"], layer["neurons"]), ref)
        lit += int(ref.sum())
    assert lit > 0 and _inked(driver, "raster") > 0
    assert f"prediction {infer_result['predictions'][0]}" in driver.find_element(By.ID, "raster-note").text

    # backends with availability and an estimate for the trained model; models with download
    driver.get(f"{served.url}/ui#backends")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '#backends-table tr[data-backend="aer"]'), 30)
    driver.find_element(By.CSS_SELECTOR, "#estimate-form button").click()
    with Client(served.url, key) as client:
        ref_estimate = client.estimate(
            {"kind": "infer", "model_id": model_id, "backend": "aer",
             "inputs": {"source": "dataset", "name": "digits", "start": 0, "stop": 100}}
        )  # fmt: skip
    aer_shots = '#backends-table tr[data-backend="aer"] .est-shots'
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, aer_shots).text != "", 60)
    assert driver.find_element(By.CSS_SELECTOR, aer_shots).text == str(ref_estimate["total"]["shots"])
    driver.get(f"{served.url}/ui#models")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'#models-table tr[data-model-id="{model_id}"]'), 20)
    assert "Download" in driver.find_element(By.CSS_SELECTOR, f'tr[data-model-id="{model_id}"]').text

    driver.find_element(By.ID, "logout").click()
    _wait(driver, lambda d: d.find_element(By.ID, "login-view").is_displayed(), 10)
    assert driver.execute_script("return sessionStorage.getItem('sqsnn-api-key')") is None
