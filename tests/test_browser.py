"""A real browser against the running lab: move a Playground slider, see the chart follow.

Drives Debian's Chromium (/usr/bin/chromium; `.ci/run` installs it) through Playwright and
leaves screenshots in test-artifacts/.

    python -m pytest -q -m browser tests/test_browser.py
"""

from pathlib import Path

import pytest
from lab_server import free_port, start_lab, stop_process_group, wait_until_healthy

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def lab_url(tmp_path):
    port, log = free_port(), tmp_path / "lab.log"
    process = start_lab(port, log, {"PPLAB_RUNS_DIR": str(tmp_path / "runs")})
    try:
        wait_until_healthy(process, port, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(process)


def gantt_forward_bars(page) -> int:
    return page.evaluate("""() => {
        const plot = document.querySelector('.js-plotly-plot');
        const trace = ((plot && plot._fullData) || []).find(t => t.name === 'F forward');
        return trace ? trace.x.length : -1;
    }""")


def test_moving_the_microbatch_slider_redraws_the_gantt(lab_url, chromium):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
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
    # Plotly redraws by replacing the plot: between two frames there may be none, or one with
    # no data yet, so every lookup here may find nothing and is tried again.
    page.wait_for_function(
        "() => document.querySelector('.js-plotly-plot')?._fullData"
        "?.find(t => t.name === 'F forward')?.x.length === 48", timeout=60_000)
    # the per-rank chart follows too: each rank is busy m x (F + B) = 12 x 3 cost units
    page.wait_for_function(
        "() => { const plots = document.querySelectorAll('.js-plotly-plot');"
        " const busy = plots[plots.length - 1]?._fullData?.find(t => t.name === 'busy');"
        " return busy && Array.from(busy.y).every(v => Math.abs(v - 36) < 1e-9); }",
        timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "playground-m12.png"), full_page=True)


def test_a_twenty_thousand_event_run_draws_a_bounded_number_of_bars(lab_url, chromium, tmp_path):
    from pplab import charts
    from pplab.runs import run_dirs
    from pplab.schedules import build
    from pplab.sim.simulator import CostModel, simulate

    events = simulate(build("1f1b", 8, 1250), CostModel(forward=1e-3, backward=2e-3))
    events["source"] = "measured"
    meta = {"schedule": {"name": "1f1b", "pp_size": 8, "num_microbatches": 1250},
            "loss": [2.0], "time_unit": "s"}
    run_dirs.save_run(tmp_path / "runs" / "big", events, meta)
    assert len(events) >= 20_000

    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab_url}/runs", timeout=120_000)
    page.get_by_role("combobox").first.click(timeout=120_000)  # bundled runs are listed first
    page.get_by_text("1f1b p=8 m=1250 · big (yours)").click()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(p =>"
        " (p.layout.annotations || []).some(a => a.text.includes('aggregated')))",
        timeout=120_000)
    page.wait_for_function("() => document.querySelector('.js-plotly-plot')?._fullData",
                           timeout=120_000)
    titles = page.evaluate("() => document.querySelector('.js-plotly-plot')"
                           ".layout.annotations.map(a => a.text)")
    assert any("aggregated: 20,000 events" in title for title in titles), titles
    drawn = page.evaluate("() => document.querySelector('.js-plotly-plot')"
                          "._fullData.reduce((n, t) => n + (t.x ? t.x.length : 0), 0)")
    assert 0 < drawn <= 2 * 8 * charts.AGGREGATE_BINS  # two rows of 8 ranks
    page.screenshot(path=str(ARTIFACTS / "runs-20000-events.png"), full_page=True)


def test_the_costs_panel_labels_are_not_cramped(lab_url, chromium):
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(lab_url, timeout=120_000)
    expect(page.locator('[data-testid="stMetricValue"]').first).to_contain_text(
        "3/11", timeout=120_000)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Costs (cost units)").click()
    inputs = sidebar.locator('[data-testid="stNumberInput"]')
    expect(inputs).to_have_count(7, timeout=60_000)  # f, b, i, w, latency, opt, validation
    # every label is shown whole (no ellipsis, no wrap) and every field shows its value
    widths = page.evaluate("""() => Array.from(document.querySelectorAll(
        '[data-testid="stSidebar"] [data-testid="stNumberInput"]')).map(box => {
            const label = box.parentElement.querySelector('[data-testid="stWidgetLabel"] p');
            const field = box.querySelector('input');
            return {label: label.innerText, fits: label.scrollWidth <= label.clientWidth,
                    lines: Math.round(label.getBoundingClientRect().height
                                      / parseFloat(getComputedStyle(label).lineHeight)),
                    field: field.getBoundingClientRect().width};
        })""")
    assert [w["label"] for w in widths] == ["F", "B", "I", "W", "latency", "optimizer",
                                             "validation"]
    for width in widths:
        assert width["fits"] and width["lines"] == 1 and width["field"] >= 60, width
    sidebar.screenshot(path=str(ARTIFACTS / "playground-costs.png"))
