"""A real browser against the running lab: move a Playground slider, see the chart follow.

Drives Debian's Chromium (/usr/bin/chromium; `.ci/run` installs it) through Playwright and
leaves screenshots in test-artifacts/.

    python -m pytest -q -m browser tests/test_browser.py
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def lab_url(tmp_path):
    port = free_port()
    env = {**os.environ, "PPLAB_RUNS_DIR": str(tmp_path / "runs")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pplab.lab_command", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"the lab exited: {process.stdout.read()}")
                time.sleep(0.5)
        else:
            pytest.fail("the lab did not answer within 120 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def gantt_forward_bars(page) -> int:
    return page.evaluate("""() => {
        const plot = document.querySelector('.js-plotly-plot');
        const trace = (plot._fullData || []).find(t => t.name === 'F forward');
        return trace ? trace.x.length : -1;
    }""")


def test_moving_the_microbatch_slider_redraws_the_gantt(lab_url):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(lab_url, timeout=120_000)
            bubble = page.locator('[data-testid="stMetricValue"]').first
            expect(bubble).to_contain_text("3/11", timeout=120_000)
            page.wait_for_function("() => document.querySelector('.js-plotly-plot')?._fullData",
                                   timeout=60_000)
            assert gantt_forward_bars(page) == 4 * 8
            page.screenshot(path=str(ARTIFACTS / "playground-m8.png"), full_page=True)

            slider = page.get_by_role("slider", name="Microbatches m")
            assert slider.get_attribute("aria-valuetext") == "8"
            slider.focus()
            for _ in range(4):
                slider.press("ArrowRight")
            expect(bubble).to_contain_text("1/5", timeout=60_000)
            page.wait_for_function(
                "() => document.querySelector('.js-plotly-plot')._fullData"
                ".find(t => t.name === 'F forward').x.length === 48", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "playground-m12.png"), full_page=True)
        finally:
            browser.close()
