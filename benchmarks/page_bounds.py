"""The worst request of each lab page at its bounds, and the Presenter while one student asks it.

What it teaches: a page's bounds are a promise about time. This script starts
``pplab lab --classroom`` on loopback, and for each page opens a fresh session (Streamlit's own
websocket protocol, as benchmarks/classroom_load.py speaks it) and moves its widgets to their
largest values, timing every request from send to "script finished": the slowest is the
page's worst, cold (nothing computed yet). Then one session asks for a heavy request never
asked before (the planner's ranking of a 310-billion-parameter model) while another moves the
Presenter's sliders, against the same Presenter moves on an idle server, in the same run.
The custom CSV's bound is timed in this process (an upload needs a browser), through the same
function the work pool runs. Loopback only; every wait bounded.

    python benchmarks/page_bounds.py
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from classroom_load import HOST, Session, start_server

SEARCHED = "searched (memory cap C)"
WAIT_S = 300
LESSONS = {  # each lesson widget at its largest values, through the link that opens it
    "01-the-bubble": "p=16&m=64&backward=4",
    "02-memory-gpipe-vs-1f1b": "p=16&m=64",
    "03-zero-bubble": "p=12&m=48",
    "05-cutting-a-model-into-stages": "layers=24&p=8&microbatches=32",
    "06-interleaved-1f1b": "p=8&m=32&v=8&latency=2",
    "07-pipedream-and-staleness": "p=8&m=16&steps=4",
    "09-3d-parallelism-at-gpt-3-scale": "model=megatron-1t&tp=8&pp=128&dp=4&batch=65536",
    "10-measured-vs-predicted": "m=64",
}


def views() -> list[tuple[str, str | None, str, list[dict]]]:
    """(what, page, query, the widget moves in order) for every page at its bounds."""
    found = [
        ("Playground: interleaved-zb p=16 m=64 v=8", None, "", [
            {"pg_schedule": "interleaved-zb"},
            {"pg_p": [16.0], "pg_microbatches": [64.0], "pg_chunks": [8.0]}]),
        ("Playground: zb-h1 p=16 m=64, 8 steps", None, "", [
            {"pg_schedule": "zb-h1"}, {"pg_p": [16.0], "pg_microbatches": [64.0]},
            {"pg_steps": [8.0]}]),
        ("Playground: order searched under a cap, p=16 m=64 C=32", None, "", [
            {"pg_schedule": SEARCHED}, {"pg_p": [16.0], "pg_microbatches": [64.0]},
            {"pg_cap": [32.0]}]),
        ("Compare: four orders searched, p=16 m=64", "compare", "", [
            {"cmp_count": [4.0]},
            {f"cmp{i}_schedule": SEARCHED for i in range(4)},
            {**{f"cmp{i}_p": [16.0] for i in range(4)},
             **{f"cmp{i}_microbatches": [64.0 - i] for i in range(4)}}]),
        ("Planner: megatron-310.1b, 256 nodes, batch 16,384", "planner", "", [
            {"pl_model": "megatron-310.1b", "pl_nodes": 256, "pl_batch": 16384}]),
        ("Planner: megatron-1t, 2,048 nodes, batch 65,536", "planner", "", [
            {"pl_model": "megatron-1t", "pl_nodes": 2048, "pl_batch": 65536}]),
        ("Presenter: interleaved-1f1b p=8 m=16 v=4", "presenter",
         "schedule=interleaved-1f1b&p=8&m=16&v=4", []),
        ("Runs: the first bundled run", "runs", "", []),
    ]
    found += [(f"Lessons: {name} at its bounds", "lessons", f"lesson={name}&{query}", [])
              for name, query in LESSONS.items()]
    return found


async def worst(port: int, page: str | None, query: str, moves: list[dict]) -> float:
    async with Session(port) as tab:
        times = [await tab.rerun()]
        if page or query:
            times.append(await tab.rerun(page=page or "", query=query))
        for move in moves:
            times.append(await tab.rerun(states=move))
        return max(times)


async def presenter_moves(port: int, moves: int, p: int) -> list[float]:
    """The Presenter's m slider moved ``moves`` times at depth ``p``: the seconds of each."""
    async with Session(port) as tab:
        await tab.rerun()
        await tab.rerun(page="presenter", query=f"p={p}")
        times = []
        for n in range(moves):
            times.append(await tab.rerun(states={"presenter_m": [float(4 + n % 12)]}))
            await asyncio.sleep(0.3)
        return times


async def presenter_beside(port: int, moves: int, p: int) -> tuple[list[float], float]:
    """The Presenter's moves while another session asks for a heavy ranking never asked."""
    async def heavy() -> float:
        async with Session(port) as tab:
            await tab.rerun()
            await tab.rerun(page="planner")
            return await tab.rerun(states={"pl_model": "megatron-310.1b", "pl_nodes": 64,
                                           "pl_batch": 65536 - 512 * p})
    asked = asyncio.create_task(heavy())
    await asyncio.sleep(1.0)  # the ranking is under way in the pool
    times = await presenter_moves(port, moves, p)
    return times, await asked


def csv_bound() -> tuple[int, float]:
    from pplab.classroom.page_work import csv_order
    from pplab.limits import MAX_PLAYGROUND_CSV_CHARS
    from pplab.schedules import build, schedule_to_csv_text
    from pplab.sim.simulator import CostModel

    m = 64
    while len(schedule_to_csv_text(build("1f1b", 16, m + 64))) < MAX_PLAYGROUND_CSV_CHARS:
        m += 64
    text = schedule_to_csv_text(build("1f1b", 16, m))
    started = time.process_time()
    csv_order(text, CostModel())
    return len(text), time.process_time() - started


def main() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="pplab-bounds-") as folder:
        server, _ = start_server(port, Path(folder))
        try:
            rows = [(what, asyncio.run(asyncio.wait_for(worst(port, page, query, moves),
                                                        WAIT_S)))
                    for what, page, query, moves in views()]
            # new views each time (the figure is built), then views shown before (kept)
            idle = asyncio.run(asyncio.wait_for(presenter_moves(port, 12, 4), WAIT_S))
            loaded, heavy = asyncio.run(asyncio.wait_for(presenter_beside(port, 12, 5),
                                                         WAIT_S))
            kept, heavy_kept = asyncio.run(asyncio.wait_for(presenter_beside(port, 12, 4),
                                                            WAIT_S))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    chars, cpu = csv_bound()
    print(f"Worst request at each page's bounds (send to script finished, cold, loopback, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}):")
    for what, seconds in rows:
        print(f"  {seconds:6.2f} s  {what}")
    print(f"  {cpu:6.2f} s  Playground: a custom CSV of {chars:,} characters (the bound), "
          f"checked and simulated (CPU time of the work pool's function, in this process)")
    for what, times, beside in (("new views, idle server", idle, None),
                                ("new views, beside a ranking", loaded, heavy),
                                ("views shown before, beside a ranking", kept, heavy_kept)):
        print(f"Presenter, 12 slider moves, {what}" + (f" ({beside:.1f} s)" if beside else "")
              + f": median {1e3 * statistics.median(times):.0f} ms, worst "
                f"{1e3 * max(times):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
