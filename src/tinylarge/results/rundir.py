"""A run directory on disk.

Layout::

    config.yaml      the resolved config (every default filled in)
    metrics.csv      one row per round
    ledger.csv       every billed event, with its start on the round clock
    dropped.csv      who left each round and why (outage, dropout, straggler)
    checkpoint.npz   state after the last completed round (atomic replace): arrays and
                     JSON only, read without unpickling (:mod:`tinylarge.results.checkpoint`)
    summary.json     written last: its presence means the run completed

A run that stops early has no summary.json and can be continued with
``tinylarge run CONFIG --out DIR --resume``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tinylarge.config import ExperimentConfig, load_config
from tinylarge.errors import TinylargeError
from tinylarge.jsonutil import dumps
from tinylarge.results import checkpoint
from tinylarge.sim.ledger import FIELDS, Event, Ledger

METRIC_FIELDS = (
    "round",
    "accuracy",
    "large_accuracy",
    "loss",
    "train_loss",
    "latency_s",
    "clock_s",
    "participants",
    "dropped",
    "dropped_reasons",
    "bytes_up",
    "bytes_down",
    "device_energy_j",
    # privacy.dp: epsilon so far, the norm this round clipped to, the share within it;
    # privacy.dpsgd: epsilon so far (the largest device's)
    "epsilon",
    "clipping_norm",
    "unclipped_fraction",
    # privacy.secagg: clients whose update is in the sum; why a round aborted
    "secagg_survivors",
    "secagg_aborted",
    # fedbuff, fedasync: the mean and largest staleness of the updates the server step used
    "staleness_mean",
    "staleness_max",
    # attack: backdoor, its success rate on the stamped test set
    "backdoor_success",
    # mobility: handovers of the moving devices during the round
    "handovers",
)

DROPPED_FIELDS = ("round", "node", "reason")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class RunDir:
    """Reads and writes one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def ledger_path(self) -> Path:
        return self.path / "ledger.csv"

    @property
    def dropped_path(self) -> Path:
        return self.path / "dropped.csv"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.npz"

    @property
    def legacy_checkpoint_path(self) -> Path:
        """Where tinylarge 0.1 kept a pickled checkpoint: never read."""
        return self.path / "checkpoint.pkl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def complete(self) -> bool:
        return self.summary_path.is_file()

    def check_new(self) -> None:
        """Refuse to overwrite an existing run."""
        if self.path.exists() and any(self.path.iterdir()):
            raise TinylargeError(
                f"run directory {str(self.path)!r} already exists and is not empty; "
                "pass --resume to continue it or choose another --out"
            )

    def check_resumable(self, config: ExperimentConfig) -> None:
        if not self.checkpoint_path.is_file():
            if self.legacy_checkpoint_path.is_file():
                raise TinylargeError(
                    f"cannot resume {str(self.path)!r}: its checkpoint.pkl is a pickle (from "
                    "tinylarge 0.1), and pickles are never loaded because they can run code; "
                    "start the run again in a new directory"
                )
            raise TinylargeError(
                f"cannot resume: {str(self.path)!r} has no checkpoint.npz "
                "(run without --resume to start it)"
            )
        # re-validated, so a field added since the run was started compares by its default
        saved = load_config(self.config_path).model_dump(mode="json")
        if _comparable(saved) != _comparable(config.model_dump(mode="json")):
            raise TinylargeError(
                f"cannot resume {str(self.path)!r}: its config.yaml differs from the given config"
            )

    def create(self, config: ExperimentConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        with self.metrics_path.open("w", newline="") as fh:
            csv.writer(fh).writerow(METRIC_FIELDS)
        with self.ledger_path.open("w", newline="") as fh:
            csv.writer(fh).writerow(FIELDS)
        with self.dropped_path.open("w", newline="") as fh:
            csv.writer(fh).writerow(DROPPED_FIELDS)

    # -- per round ---------------------------------------------------------
    def append_round(
        self,
        metrics: dict[str, Any],
        events: Sequence[Event],
        dropped: Mapping[int, str] | None = None,
    ) -> None:
        with self.metrics_path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=METRIC_FIELDS).writerow(
                {k: ("" if metrics.get(k) is None else metrics[k]) for k in METRIC_FIELDS}
            )
        with self.ledger_path.open("a", newline="") as fh:
            writer = csv.writer(fh)
            for e in events:
                writer.writerow([getattr(e, f) for f in FIELDS])
        with self.dropped_path.open("a", newline="") as fh:
            writer = csv.writer(fh)
            for cid, reason in sorted((dropped or {}).items()):
                writer.writerow([metrics["round"], f"client-{cid}", reason])

    def read_dropped(self) -> list[tuple[int, str, str]]:
        """``(round, node, reason)`` of every device that left a round."""
        if not self.dropped_path.is_file():
            return []
        with self.dropped_path.open(newline="") as fh:
            return [(int(r["round"]), r["node"], r["reason"]) for r in csv.DictReader(fh)]

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        _atomic_write(self.checkpoint_path, checkpoint.to_bytes(state))

    # -- resume ------------------------------------------------------------
    def load_checkpoint(self) -> dict[str, Any]:
        state = checkpoint.load(self.checkpoint_path)
        if not isinstance(state, dict):
            raise TinylargeError(f"{self.checkpoint_path} does not hold a run's state")
        return state

    def read_metrics(self, *, upto_round: int | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        with self.metrics_path.open(newline="") as fh:
            for raw in csv.DictReader(fh):
                row: dict[str, Any] = {k: _parse(v) for k, v in raw.items()}
                if upto_round is None or row["round"] <= upto_round:
                    rows.append(row)
        return rows

    def truncate_to(self, rnd: int) -> tuple[list[dict[str, Any]], Ledger]:
        """Drop rows and events after round ``rnd`` (work of a round that did not finish)."""
        rows = self.read_metrics(upto_round=rnd)
        ledger = Ledger(e for e in Ledger.from_csv(self.ledger_path) if e.round <= rnd)
        dropped = [d for d in self.read_dropped() if d[0] <= rnd]
        self.create_files_from(rows, ledger)
        with self.dropped_path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(DROPPED_FIELDS)
            writer.writerows(dropped)
        return rows, ledger

    def create_files_from(self, rows: list[dict[str, Any]], ledger: Ledger) -> None:
        with self.metrics_path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=METRIC_FIELDS)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r.get(k) is None else r[k]) for k in METRIC_FIELDS})
        ledger.to_csv(self.ledger_path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        _atomic_write(self.summary_path, (dumps(summary) + "\n").encode())

    def read_summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.summary_path.read_text())
        return data


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """A config without the fields that may change on resume (where the run executes)."""
    engine = {k: v for k, v in cfg.get("engine", {}).items() if k not in ("backend", "ray_address")}
    return {**cfg, "engine": engine}


def _parse(v: str) -> Any:
    if v == "":
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v
