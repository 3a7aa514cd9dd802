"""Runs, comparisons and schedules bundled with pplab, installed as ``pplab._data``.

Code finds them through ``pplab.runs.resources`` (``bundled_runs_dir()`` and friends).
"""
