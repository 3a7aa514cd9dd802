"""Calibration: fit a cost model from a measured run, then replay it or ask what-if.

What it teaches: a prediction drawn over a measurement is only worth looking at when the
two agree, and where they disagree the difference should have a name. From one recorded run
this package fits what every stage's forward and backward cost, what a message takes on
each link, what a rank spends around each action, what the step's tail (flush, optimizer)
costs and, when ranks outnumber cores, how much sharing them slowed the work
(``fit``), how its actions vary inside a step, from step to step and with the activations
their rank holds (``variation``); keeps that beside the run (``store``: calibration.json);
turns it into the simulator's cost model for the run's own schedule or another one
(``costs``); predicts a step (``predict``: replay and what-if, processor sharing in
``sharing`` when ranks share cores), with an interval where the measured steps should fall
(``interval``); and splits the gap between measured and predicted into compute,
communication, waiting, contention and overhead (``breakdown``).

    pplab predict data/runs/1f1b-p2m8
    pplab predict data/runs/1f1b-p2m8 --schedule gpipe --microbatches 16 --json
"""

from pplab.calibration.breakdown import CATEGORIES, gap_breakdown
from pplab.calibration.costs import cost_model_for
from pplab.calibration.fit import fit
from pplab.calibration.model import Calibration, Contention, LinkFit, Measured
from pplab.calibration.predict import Prediction, predict, replay, what_if
from pplab.calibration.store import CALIBRATION_FILE, calibration_for
from pplab.sim.sharing import SharedClock, simulate_shared

__all__ = ["CALIBRATION_FILE", "CATEGORIES", "Calibration", "Contention", "LinkFit", "Measured",
           "Prediction", "SharedClock", "calibration_for", "cost_model_for", "fit",
           "gap_breakdown", "predict", "replay", "simulate_shared", "what_if"]
