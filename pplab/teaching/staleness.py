"""What staleness costs, measured fairly: the same optimizer updates, each on the same samples.

What it teaches: PipeDream updates every stage after every microbatch, so next to 1F1B with m
microbatches per step it makes m times as many optimizer steps, each on one microbatch: its
loss differs for that reason as well as for its stale weights. To see staleness alone,
train three ways for the same number of updates U, each update on the same B rows, from the
same data stream (update k sees the batch of step k):

* ``sync``: 1F1B with 2 microbatches of B/2 rows per step: one update per step, on fresh
  weights (gradient accumulation: the same update as one batch of B rows);
* ``pipedream``: one microbatch of B rows per step, an update after every backward, each
  stage's gradient computed on the version its forward saw (stage s of p: p-1-s updates old);
* ``pipedream-2bw``: 2 microbatches of B/2 rows per step, one update per step, computed on
  the weights of the update before (one update old on every stage).

Each runs at a few learning rates, so the cost of staleness is not the accident of one rate.
All runs train in one spawn of ``pp`` ranks (starting torch dominates on a small machine);
``benchmarks/staleness.py`` runs it and prints the table, the lesson reads the bundled data.

    python benchmarks/staleness.py --out data/comparisons/staleness-p2
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pplab.runs.resources import bundled_comparisons_dir

SCHEDULES = {"sync": "1f1b", "pipedream": "pipedream", "pipedream-2bw": "pipedream-2bw"}
LABELS = {"sync": "synchronous (1F1B, fresh weights)", "pipedream": "PipeDream",
          "pipedream-2bw": "PipeDream-2BW"}
DATA_FILE = "staleness.json"
BUNDLED = "staleness-p2"


@dataclass(frozen=True)
class Study:
    """The sizes of one fair comparison; every schedule gets the same model and data."""

    pp: int = 2
    updates: int = 500
    rows_per_update: int = 8
    lrs: tuple[float, ...] = (3e-4, 1e-3, 2e-3)
    layers: int = 4
    d_model: int = 64
    seq_len: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pp < 2 or self.updates < 10 or not self.lrs:
            raise ValueError(f"a study needs pp >= 2, updates >= 10 and a learning rate; got "
                             f"pp={self.pp}, updates={self.updates}, lrs={self.lrs}")
        if self.rows_per_update % self.pp:
            raise ValueError(f"{self.rows_per_update} rows per update do not split into "
                             f"{self.pp} microbatches")

    def microbatches(self, name: str) -> int:
        """Per step: PipeDream one (so its steps are its updates), the others pp."""
        return 1 if name == "pipedream" else self.pp

    def configs(self) -> dict[tuple[str, float], object]:
        from pplab.engine.train_config import TrainConfig

        return {(name, lr): TrainConfig(
            schedule=SCHEDULES[name], pp_size=self.pp, microbatches=self.microbatches(name),
            steps=self.updates, batch_size=self.rows_per_update, layers=self.layers,
            d_model=self.d_model, seq_len=self.seq_len, lr=lr, seed=self.seed, record=False,
            out="-") for name in SCHEDULES for lr in self.lrs}


def train_all(rank: int, world_size: int, report, requests: dict) -> dict:
    """Runs on every rank: train each checked request in turn; the last stage's losses."""
    from pplab.engine.training import train_rank

    return {key: train_rank(request, rank)["losses"] for key, request in requests.items()}


def run_study(study: Study, timeout: float = 600.0) -> dict:
    """Train every schedule at every rate for real; the document ``save`` writes."""
    from datetime import UTC, datetime

    from pplab.engine.request import check_request
    from pplab.engine.supervisor import spawn_ranks

    # Checked once here, not once per rank: every rank gets the same checked requests.
    requests = {key: check_request(config) for key, config in study.configs().items()}
    results = spawn_ranks(study.pp, train_all, requests, timeout=timeout)
    losses = {name: {} for name in SCHEDULES}
    for result in results:
        for (name, lr), values in result.items():
            if values:
                losses[name][f"{lr:g}"] = [round(float(v), 6) for v in values]
    return {"description": __doc__.split("\n\n")[1].replace("\n", " "),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "study": asdict(study), "loss_is": "mean training loss of the rows each update "
            "was computed on, per optimizer update (measured)", "losses": losses}


def save(document: dict, folder: str | Path) -> Path:
    from pplab.runs.atomic_files import write_text_atomic

    path = Path(folder) / DATA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(document, indent=1, allow_nan=False) + "\n")
    return path


def load(path: str | Path | None = None) -> dict:
    """The bundled study (or the one at ``path``); ValueError in one line if unreadable."""
    path = Path(path) if path is not None else bundled_comparisons_dir() / BUNDLED / DATA_FILE
    try:
        document = json.loads(path.read_text())
        losses = document["losses"]
        if set(losses) != set(SCHEDULES) or not all(losses.values()):
            raise KeyError("losses of every schedule")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a staleness study: {error}") from None
    return document


def final_losses(document: dict, tail: float = 0.1) -> dict[str, dict[str, float]]:
    """Per schedule and learning rate: the mean loss of the last ``tail`` of the updates
    (one update's loss is noisy: it is one batch's)."""
    out: dict[str, dict[str, float]] = {}
    for name, by_lr in document["losses"].items():
        out[name] = {}
        for lr, values in by_lr.items():
            last = values[-max(1, int(len(values) * tail)):]
            out[name][lr] = sum(last) / len(last)
    return out


def table_text(document: dict, tail: float = 0.1) -> str:
    """The comparison as a table: final loss per schedule per rate, and the best of each."""
    finals = final_losses(document, tail)
    lrs = list(next(iter(document["losses"].values())))
    updates = len(next(iter(next(iter(document["losses"].values())).values())))
    lines = [f"final loss (mean of the last {tail:.0%} of {updates} updates, measured), "
             f"each update on {document['study']['rows_per_update']} rows",
             f"{'schedule':<16}" + "".join(f"{'lr ' + lr:>11}" for lr in lrs) + f"{'best':>11}"]
    for name in SCHEDULES:
        row = finals[name]
        best = min(row.values())
        lines.append(f"{name:<16}" + "".join(f"{row[lr]:>11.4f}" for lr in lrs)
                     + f"{best:>11.4f}")
    return "\n".join(lines)


def loss_figure(document: dict, lr: str):
    """Loss against optimizer updates, one line per schedule, at one learning rate."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for name in SCHEDULES:
        values = document["losses"][name].get(lr)
        if values:
            figure.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values,
                                        mode="lines", name=LABELS[name]))
    rows = document["study"]["rows_per_update"]
    figure.update_layout(
        title=f"Loss at equal updates, lr {lr} (measured, pp={document['study']['pp']})",
        xaxis_title=f"optimizer updates (each on {rows} rows)",
        yaxis_title="training loss of the update's rows (measured)", height=360,
        margin={"l": 10, "r": 10, "t": 60, "b": 40})
    return figure
