"""Run directories: resolved config, per-round metrics, ledger, checkpoints, summary."""

from tinylarge.results.rundir import RunDir

__all__ = ["RunDir"]
