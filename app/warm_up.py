"""What the lab computes while its server starts: the first views of its slowest pages.

The Playground is the page a browser opens first: its default configuration's simulation,
figures and schedule text go into the server's shared answers (``shared_work``), and the
modules every page imports are loaded, before anyone asks. The Planner's default ranking of
every layout (seconds of simulation) is asked of the work pool at the same time, and the
Presenter's worker is started (its first view waited a second for it). ``pplab
lab`` runs ``warm()`` in a thread of the server process (``pplab.cli.lab_server``), so the
first visitor reads pages drawn from answers already made instead of waiting for them.

    .venv/bin/python app/warm_up.py   (prints what it made and how long it took)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
PLAYGROUND_DEFAULTS = ("gpipe", 4, 8, 2)  # schedule, p, m, v: what the Playground opens with
PLANNER_DEFAULTS = ("gpt3-175b", 512, 1536)  # model, nodes, global batch: the Planner's
RANKING_WAIT_S = 120.0  # the ranking is left to the pool's own deadline after this


def playground_default():
    """The configuration the Playground's widgets give before anyone touches them."""
    from lab_widgets import COST_INPUTS, SimConfig

    from pplab.schedules import SCHEDULES
    from pplab.sim.cost_model import CostModel

    name, pp_size, microbatches, chunks = PLAYGROUND_DEFAULTS
    family = SCHEDULES[name]
    most = family.max_chunks or 8
    chunks = most if family.min_chunks == most else min(max(family.min_chunks, chunks), most)
    costs = {short: float(default) for short, _, default, _, _ in COST_INPUTS}
    cost = CostModel(forward=costs["f"], backward=costs["b"], backward_input=costs["i"],
                     backward_weight=costs["w"], latency=costs["l"], optimizer=costs["o"],
                     validation=costs["v"], overlap=0.0)
    return SimConfig(name, pp_size, microbatches, chunks, cost)


def planner_ranking():
    """A ticket for the Planner's default ranking, asked of the work pool as the page asks
    it (the same function and arguments: one answer for both)."""
    from pplab.classroom import page_work
    from pplab.classroom.shared_results import RESULTS
    from pplab.classroom.work_pool import POOL
    from pplab.limits import MAX_PLANNER_PAGE_RANKED_PP
    from pplab.planner import PRESET_CLUSTERS, PRESET_MODELS

    model, nodes, batch = PLANNER_DEFAULTS
    cluster = PRESET_CLUSTERS[next(iter(PRESET_CLUSTERS))].with_nodes(nodes)
    POOL.warm()
    return RESULTS.submit(page_work.ranked_layouts, PRESET_MODELS[model], cluster, batch,
                          MAX_PLANNER_PAGE_RANKED_PP, label="ranking every layout of these gpus")


def warm() -> str:
    """Make the Playground's and the Planner's first views; say what and how long."""
    started = time.perf_counter()
    if str(APP_DIR) not in sys.path:  # as app/lab.py does: the pages import these by name
        sys.path.insert(0, str(APP_DIR))
    import lab_widgets

    from pplab.classroom.work_pool import PRESENTER_POOL

    PRESENTER_POOL.warm()  # its worker imports pplab now, not on the projector's first view
    ranking = planner_ranking()  # in a worker process, while this thread draws
    try:
        config = playground_default()
        lab_widgets.playground_figures(config)
        lab_widgets.schedule_text(config)
        made = f"the Playground's {config.label()} in {time.perf_counter() - started:.1f} s"
        if ranking.wait(RANKING_WAIT_S):
            ranking.result()
            made += f", the Planner's ranking in {time.perf_counter() - started:.1f} s"
    finally:
        ranking.release()
    return made


if __name__ == "__main__":
    print(f"warmed up {warm()}")
