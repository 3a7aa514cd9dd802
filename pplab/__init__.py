"""pplab: learn pipeline parallelism by running it."""

__version__ = "0.1.0"
