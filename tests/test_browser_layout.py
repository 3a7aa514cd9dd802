"""Every page and every lesson's widget as a laptop (1280 x 720) and a projector (1920 x 1080)
show it, in a real browser: nothing drawn over a title, no legend under a slider, no label
cut, no table wider than its box without saying so; and the Runs page's step follows the run.

One lab server and one Chromium for the whole module (starting either costs seconds). Each
page's layout is checked in a fresh browser session with an empty cache. First renders are
timed as a visitor meets them (``test_first_render_of_every_page``): the lab's first page in
a browser that never opened it, then every page in a new tab of that browser (its cache
holding the JavaScript the first visit fetched, a fresh Streamlit session running the page
from scratch), then every page typed into the first tab's address bar, then the pages by the
sidebar; the times are printed, not asserted (they depend on the machine and on what else
runs on it). Screenshots of every view (what shows above the fold, and the whole page) are
left in $PPLAB_ARTIFACTS/layout (test-artifacts/layout by default), and the test prints the folder.

    python -m pytest -q -s -m browser tests/test_browser_layout.py
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import pytest
from lab_server import free_port, start_lab, stop_process_group, wait_until_healthy
from layout_checks import PROBLEMS, READY, SCRIPT_DONE

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((1280, 720), (1920, 1080))
PAGES = [("playground", "/"), ("compare", "/compare"),
         ("comparison", "/compare?comparison=pp4-vs-tp4-cpu"),  # a saved one, as the demo's
         ("planner", "/planner"), ("run", "/run"), ("runs", "/runs"),
         ("presenter", "/presenter")] + [
    (f"lesson-{folder.name.split('-')[0]}", f"/lessons?lesson={folder.name}")
    for folder in sorted((ROOT / "lessons").iterdir()) if folder.name[:2].isdigit()]
RUN_OF_20_STEPS = "twenty-steps"


def artifacts() -> Path:
    folder = Path(os.environ.get("PPLAB_ARTIFACTS") or ROOT / "test-artifacts") / "layout"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_run_of_twenty_steps(runs: Path) -> None:
    """A recorded-looking run of 20 steps (1F1B, p=2, m=8), simulated: the bundled runs have 6."""
    from pplab.runs import run_dirs
    from pplab.schedules import build
    from pplab.schedules.steps import repeat_steps
    from pplab.sim.simulator import CostModel, simulate

    events = simulate(repeat_steps(build("1f1b", 2, 8), 20),
                      CostModel(forward=1e-3, backward=2e-3), optimizer_sync="barrier")
    events["source"] = "measured"
    meta = {"schedule": {"name": "1f1b", "pp_size": 2, "num_microbatches": 8},
            "loss": [2.5 - 0.02 * step for step in range(20)], "time_unit": "s"}
    run_dirs.save_run(runs / RUN_OF_20_STEPS, events, meta)


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("layout")
    save_run_of_twenty_steps(folder / "runs")
    port, log = free_port(), folder / "lab.log"
    process = start_lab(port, log, {"PPLAB_RUNS_DIR": str(folder / "runs")})
    try:
        wait_until_healthy(process, port, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(process)


def open_fresh(chromium, url: str, width: int, height: int):
    """A new browser session on ``url``: (page, (seconds until the server had run the page's
    script, seconds until the browser had drawn all of it, charts included))."""
    page = chromium.new_page(viewport={"width": width, "height": height})
    started = time.monotonic()
    page.goto(url, timeout=180_000, wait_until="commit")
    page.wait_for_function(SCRIPT_DONE, timeout=180_000, polling=50)
    ran = time.monotonic() - started
    page.wait_for_function(READY, timeout=180_000, polling=50)
    return page, (ran, time.monotonic() - started)


def settle(page) -> None:
    """Wait for the rerun an interaction started to finish, and its charts to be drawn."""
    page.wait_for_timeout(300)
    page.wait_for_function(READY, timeout=180_000, polling=100)
    page.wait_for_timeout(300)


def screenshots(page, name: str, width: int, height: int) -> None:
    """What shows above the fold, then the whole page (Streamlit scrolls inside its main
    block, so the window is made as tall as that block for the second)."""
    folder = artifacts()
    page.screenshot(path=str(folder / f"{name}-{width}x{height}-fold.png"))
    tall = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    if tall > height:
        page.set_viewport_size({"width": width, "height": tall})
        page.wait_for_timeout(500)
    page.screenshot(path=str(folder / f"{name}-{width}x{height}.png"))
    page.set_viewport_size({"width": width, "height": height})


@pytest.fixture(scope="module")
def render_times():
    """Each view's first render, printed as one table when the module is done: seconds until
    the server had run the page (script) and until the browser had drawn it (drawn)."""
    times: dict[tuple[str, int], tuple[float, float]] = {}
    yield times
    if times:
        print(f"\nfirst render of each page in a browser with an empty cache, seconds from "
              f"opening it (load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; screenshots in "
              f"{artifacts()}):")
        print(f"  {'page':<12}" + "".join(f"{f'{w}x{h} script/drawn':<26}" for w, h in SIZES))
        for name, _ in PAGES:
            print(f"  {name:<12}" + "".join(
                f"{f'{times[name, w][0]:.1f} / {times[name, w][1]:.1f}':<26}"
                if (name, w) in times else f"{'-':<26}" for w, _ in SIZES))


@pytest.mark.parametrize("width,height", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("name,path", PAGES, ids=[name for name, _ in PAGES])
def test_every_page_and_lesson_fits_a_laptop_and_a_projector(lab_url, chromium, render_times,
                                                             name, path, width, height):
    page, render_times[name, width] = open_fresh(chromium, lab_url + path, width, height)
    page.wait_for_timeout(400)  # Plotly lays out its legend after the first draw
    found = page.evaluate(PROBLEMS)
    if name == "presenter":  # a projector shows the whole step without scrolling
        bottom = page.evaluate("() => document.querySelector('[data-testid=\"stPlotlyChart\"]')"
                               ".getBoundingClientRect().bottom")
        if bottom > height:
            found.append(f"the chart ends at {bottom:.0f} px, below the fold")
    screenshots(page, name, width, height)
    page.close()
    assert not found, f"{name} at {width}x{height}:\n" + "\n".join(found)


def step_everywhere(page) -> set[str]:
    """Every "step k of n" the page writes: the slider's value, the charts', the captions'
    (not the slider's bounds, written at its two ends)."""
    return set(page.evaluate(r"""() => {
        const main = document.querySelector('[data-testid="stMain"]').cloneNode(true);
        main.querySelectorAll('[data-testid="stSliderTickBar"]').forEach(bar => bar.remove());
        const texts = [main.innerText || main.textContent];
        document.querySelectorAll('.js-plotly-plot').forEach(plot => texts.push(
            ...(plot.layout.annotations || []).map(a => a.text),
            (plot.layout.title && plot.layout.title.text) || ''));
        return texts.join('\n').match(/step \d+ of \d+/g) || [];
    }"""))


def test_the_runs_step_follows_the_run_it_steps_through(lab_url, chromium):
    page, _ = open_fresh(chromium, lab_url + "/runs", 1280, 720)
    runs = page.get_by_role("combobox").first
    runs.click()
    page.get_by_role("option", name="1f1b p=2 m=8 · cpu · 1f1b-p2m8 (bundled)").click()
    settle(page)
    slider = page.get_by_role("slider", name="Step shown")
    assert slider.get_attribute("aria-valuetext") == "step 6 of 6"
    slider.focus()
    for _ in range(3):
        slider.press("ArrowLeft")
    settle(page)
    assert step_everywhere(page) == {"step 3 of 6"}
    runs.click()
    page.get_by_role("option", name=f"1f1b p=2 m=8 · {RUN_OF_20_STEPS} (yours)").click()
    settle(page)
    slider = page.get_by_role("slider", name="Step shown")
    # a run opens at its own last step, and the titles, metrics and captions say the same
    assert slider.get_attribute("aria-valuetext") == "step 20 of 20"
    assert step_everywhere(page) == {"step 20 of 20"}
    assert not page.evaluate(PROBLEMS)  # this run's figures are laid out too (1/9 is long)
    page.screenshot(path=str(artifacts() / "runs-step-follows-the-run-1280x720.png"),
                    full_page=True)


def test_first_render_of_every_page(lab_url, chromium):
    """Seconds until the server had run each page and until the browser had drawn it: the
    lab's first page in a browser with an empty cache (Streamlit's and Plotly's 7 MB of
    JavaScript fetched and compiled), every page in a new tab of that browser, every page
    typed into the address bar of the first tab, and the pages reached through the sidebar.
    Printed, not asserted."""
    context = chromium.new_context(viewport={"width": 1280, "height": 720})
    try:
        first = context.new_page()
        times = {"first visit (empty cache)": visit(first, lab_url + "/")}
        for name, path in PAGES:
            tab = context.new_page()
            times[f"new tab: {name}"] = visit(tab, lab_url + path)
            tab.close()
        for name, path in PAGES:  # typed into the address bar of the first tab
            times[f"same tab: {name}"] = visit(first, lab_url + path)
        for title in ("Compare", "Planner", "Run", "Runs", "Lessons", "Presenter",
                      "Playground"):
            link = first.get_by_role("link", name=title, exact=True).first
            times[f"sidebar: {title}"] = timed(first, link.click)
    finally:
        context.close()
    print(f"\nfirst render as a visitor meets it, seconds to script done / drawn, 1280x720 "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
    for what, (ran, drawn) in times.items():
        print(f"  {what:<28}{ran:.1f} / {drawn:.1f}")
    assert all(drawn >= ran > 0 for ran, drawn in times.values())


def visit(page, url: str) -> tuple[float, float]:
    """``timed`` for opening ``url`` in ``page``."""
    return timed(page, functools.partial(page.goto, url, wait_until="commit"))


def timed(page, start) -> tuple[float, float]:
    """(seconds until the server had run the page, seconds until the browser had drawn it)
    after ``start()`` opens it: a navigation, or a click that starts a rerun."""
    started = time.monotonic()
    start()
    page.wait_for_timeout(50)  # a click's rerun has begun: the old page is no longer done
    page.wait_for_function(SCRIPT_DONE, timeout=180_000, polling=50)
    ran = time.monotonic() - started
    page.wait_for_function(READY, timeout=180_000, polling=50)
    return ran, time.monotonic() - started
