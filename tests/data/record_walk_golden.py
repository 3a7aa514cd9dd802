"""Record every family's simulated timeline and the shared-core predictions (pre-refactor)."""
import gzip, json, random, sys
sys.path.insert(0, "/work/main")
from pplab.schedules import build
from pplab.schedules.registry import SCHEDULES
from pplab.cost_model import CostModel
from pplab.simulator import simulate
from pplab.calibration.sharing import simulate_shared
from pplab.schedules.search import search_schedule

COLS = ["rank", "stage", "kind", "microbatch", "step", "start", "end", "version", "peer", "bytes", "detail"]

def rows(events):
    out = []
    for r in events[COLS].itertuples(index=False):
        out.append([int(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4]), float(r[5]), float(r[6]),
                    int(r[7]), int(r[8]), int(r[9]), str(r[10])])
    return out

def shapes(name):
    fam = SCHEDULES[name]
    v = fam.min_chunks
    out = [(4, 8, v), (3, 6, v)]
    if fam.max_chunks is None:
        out.append((2, 4, 3))
    return out

def costs(schedule):
    n, p = schedule.num_stages, schedule.pp_size
    yield "default", CostModel()
    yield "fiw", CostModel(forward=1, backward=2, backward_input=1, backward_weight=1)
    yield "unequal", CostModel(forward=1.3, backward=2.1, backward_input=1.2, backward_weight=0.9,
                               stage_scale=tuple(1 + 0.25 * (s % 3) for s in range(n)))
    yield "links", CostModel(latency=0.15, bandwidth=4.0, message_bytes=1.0,
                             link_scale=tuple(1 + (s % 2) * 3 for s in range(n - 1)))
    yield "overlap_opt", CostModel(latency=0.05, overlap=0.5, optimizer=0.7,
                                   stage_scale=tuple(1 + 0.1 * r for r in range(p)))
    yield "stage_costs", CostModel(latency=0.02, stage_costs=tuple(
        (1 + 0.1 * s, 2 + 0.05 * s, 1.1 + 0.02 * s, 0.9 + 0.03 * s) for s in range(n)))

record = {"simulate": {}, "shared": {}, "search": {}}
for name in SCHEDULES:
    for (p, m, v) in shapes(name):
        opts = {"num_steps": 2} if SCHEDULES[name].asynchronous else {}
        try:
            schedule = build(name, p, m, v, **opts)
        except ValueError as e:
            print("skip", name, p, m, v, e); continue
        for label, cost in costs(schedule):
            key = f"{name}|p{p}m{m}v{v}|{label}"
            record["simulate"][key] = rows(simulate(schedule, cost))
            if label in ("default", "unequal", "overlap_opt", "stage_costs"):
                for slots, replicas in ((1, 1), (2, 1), (2, 2), (3.5, 1), (64, 1)):
                    k = f"{key}|slots{slots}r{replicas}"
                    record["shared"][k] = rows(simulate_shared(schedule, cost, slots, replicas))
                n = schedule.num_stages
                lead = [{"F": 0.1, "B": 0.2, "I": 0.1, "W": 0.05} for _ in range(n)]
                record["shared"][f"{key}|slots2r1|lead"] = rows(
                    simulate_shared(schedule, cost, 2, 1, lead=lead))
                rng = random.Random(7)
                record["shared"][f"{key}|slots2r1|lead|spread"] = rows(
                    simulate_shared(schedule, cost, 2, 1, lead=lead,
                                    spread=lambda: rng.uniform(0.9, 1.1)))
for (p, m, cap) in ((4, 8, 4), (4, 8, 2), (3, 6, 5), (5, 10, 3)):
    for label, cost in (("default", CostModel()),
                        ("fiw", CostModel(forward=1, backward=2, backward_input=1, backward_weight=1, latency=0.1)),
                        ("unequal", CostModel(forward=1, backward=2.4, backward_input=1.5, backward_weight=0.9,
                                              stage_scale=tuple(1 + 0.3 * (r % 2) for r in range(p))))):
        s = search_schedule(p, m, cost, max_in_flight=cap)
        record["search"][f"p{p}m{m}cap{cap}|{label}"] = {
            "pretty": s.pretty(), "params": {k: str(v) for k, v in s.params.items()}}
with gzip.open("/work/main/tests/data/walk_golden.json.gz", "wt") as f:
    json.dump(record, f)
print({k: len(v) for k, v in record.items()})
