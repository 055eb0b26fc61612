"""The round loop, written once for every scheme and backend.

``run_experiment`` builds the context (data, clients, fit checks), the scheme
and the run directory, then runs rounds on the simulated clock: each round's
metrics, ledger events and a checkpoint are written as it completes, and
summary.json last. ``resume=True`` continues a stopped run from its last
checkpoint to the same final numbers, because every random draw depends only
on (seed, round, stream), never on how many draws came before.

With ``training.target_accuracy`` set, the run ends after the first evaluated
round whose test accuracy reaches it (McMahan et al. 2017 report "rounds to a
target accuracy", https://arxiv.org/abs/1602.05629); summary.json then holds
``rounds_to_target``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tinylarge.config import ExperimentConfig, parse_config
from tinylarge.results.rundir import RunDir
from tinylarge.schemes.base import SCHEMES, Scheme
from tinylarge.schemes.options import scheme_options
from tinylarge.sim.context import Context
from tinylarge.sim.ledger import Ledger


def build_scheme(ctx: Context) -> Scheme[Any]:
    """The configured scheme on ``ctx``, its options validated (and its refusals raised)."""
    options = scheme_options(ctx.config)
    return SCHEMES[ctx.config.scheme.name](ctx, options)


def dropped_reasons(dropped: dict[int, str]) -> str:
    """``"dropout:2 outage:1"``: how many participants left a round, by reason."""
    counts: dict[str, int] = {}
    for reason in dropped.values():
        counts[reason] = counts.get(reason, 0) + 1
    return " ".join(f"{r}:{n}" for r, n in sorted(counts.items()))


def rounds_to_target(rows: list[dict[str, Any]], target: float | None) -> int | None:
    """Rounds run until the first evaluated round with ``accuracy >= target`` (1-based), or None."""
    if target is None:
        return None
    for row in rows:
        acc = row.get("accuracy")
        if acc is not None and acc >= target:
            return int(row["round"]) + 1
    return None


def summarize(
    ctx: Context,
    scheme: Scheme[Any],
    rows: list[dict[str, Any]],
    ledger: Ledger,
    *,
    wall_time_s: float,
) -> dict[str, Any]:
    """summary.json: every key of DESIGN section 4, derived from the ledger and metrics."""
    cfg = ctx.config
    last = rows[-1] if rows else {}
    prof = ctx.model_profile
    summary: dict[str, Any] = {
        "scheme": cfg.scheme.name,
        "dataset": cfg.task.dataset,
        "model": cfg.model.name,
        "rounds": len(rows),
        "seed": cfg.seed,
        "backend": ctx.backend_name,
        "accuracy": last.get("accuracy"),
        "large_accuracy": last.get("large_accuracy"),
        "loss": last.get("loss"),
        "round_latency_s": [r["latency_s"] for r in rows],
        "total_latency_s": sum(r["latency_s"] for r in rows),
        "device_energy_j": ledger.device_energy_j(),
        "device_compute_energy_j": ledger.total("joules", side="device", kind="compute"),
        "device_macs": ledger.device_macs(),
        "server_energy_j": ledger.total("joules", side="server"),
        "bytes_up": ledger.bytes_up(),
        "bytes_down": ledger.bytes_down(),
        **ctx.fits_summary(),
        "num_devices": len(ctx.clients),
        "peak_sram_bytes": prof.peak_sram_bytes,
        "flash_bytes": prof.flash_bytes,
        "train_memory_bytes": prof.train_memory_bytes,
        "params": prof.params,
        "wall_time_s": wall_time_s,
        "target_accuracy": cfg.training.target_accuracy,
        "rounds_to_target": rounds_to_target(rows, cfg.training.target_accuracy),
    }
    if ctx.privacy is not None:
        summary.update(ctx.privacy.summary(len(rows)))
    summary.update(privacy_costs(ledger))
    if ctx.adversary is not None or ctx.defense is not None:
        summary["attack"] = ctx.adversary.name if ctx.adversary else None
        summary["defense"] = ctx.defense.name if ctx.defense else None
        summary["malicious"] = len(ctx.adversary.malicious) if ctx.adversary else 0
        summary["backdoor_success"] = last.get("backdoor_success")
    if ctx.dpsgd is not None:
        summary.update(ctx.dpsgd.summary())
    summary["per_profile"] = per_profile(ctx, ledger)
    if any(c.mobile is not None for c in ctx.clients):
        summary["handovers"] = sum(int(r.get("handovers") or 0) for r in rows)
        summary["outage_transfers"] = sum(1 for e in ledger if e.outage)
    summary.update(scheme.summary_extras())
    return summary


#: Ledger ``what`` prefixes of privacy work: DP clipping and noise, SecAgg's stages.
PRIVACY_WORK = ("dp-", "secagg-")


def privacy_costs(ledger: Ledger) -> dict[str, Any]:
    """What privacy cost the devices (DP clipping and noise, every SecAgg stage's transfers
    and crypto): ``privacy_device_energy_j``, ``privacy_device_seconds``, ``privacy_bytes``;
    nothing when the run had none."""
    events = [e for e in ledger.select(side="device") if e.what.startswith(PRIVACY_WORK)]
    if not events:
        return {}
    return {
        "privacy_device_energy_j": math.fsum(e.joules for e in events),
        "privacy_device_seconds": math.fsum(e.seconds for e in events),
        "privacy_bytes": sum(e.bytes for e in events),
    }


def per_profile(ctx: Context, ledger: Ledger) -> dict[str, dict[str, Any]]:
    """Device-side costs per device profile: where the joules and bytes went."""
    out: dict[str, dict[str, Any]] = {}
    for c in ctx.clients:
        pid = c.profile.id
        if pid in out:
            out[pid]["devices"] += 1
            stacks = out[pid]["stack"]
            if c.profile.stack is not None and c.profile.stack not in (stacks or "").split(", "):
                out[pid]["stack"] = f"{stacks}, {c.profile.stack}"  # groups chose other stacks
            if c.link_name not in out[pid]["link"].split(", "):  # groups on other links
                out[pid]["link"] = f"{out[pid]['link']}, {c.link_name}"
            continue
        out[pid] = {
            "devices": 1,
            "tier": c.profile.tier,
            "stack": c.profile.stack,
            "link": c.link_name,
            "compute_j": ledger.total("joules", side="device", kind="compute", profile=pid),
            "radio_j": ledger.total("joules", side="device", kind="upload", profile=pid)
            + ledger.total("joules", side="device", kind="download", profile=pid),
            "compute_s": ledger.total("seconds", side="device", kind="compute", profile=pid),
            "airtime_s": ledger.total("seconds", side="device", kind="upload", profile=pid)
            + ledger.total("seconds", side="device", kind="download", profile=pid),
            "bytes_up": ledger.bytes_up(side="device", profile=pid),
            "bytes_down": ledger.bytes_down(side="device", profile=pid),
        }
    return out


def run_experiment(
    config: ExperimentConfig,
    *,
    out: str | Path,
    backend: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) an experiment into the run directory ``out``; return the summary."""
    started = time.perf_counter()
    run = RunDir(out)
    if resume:
        run.check_resumable(config)
    else:
        run.check_new()
    ctx = Context(config, backend=backend)
    try:
        _ = ctx.backend  # fail on a missing extra before anything is written
        scheme = build_scheme(ctx)
        scheme.setup()
        first = 0
        rows: list[dict[str, Any]] = []
        prior_wall = 0.0
        if resume:
            ckpt = run.load_checkpoint()
            scheme.load_state(ckpt["scheme"])
            if ctx.privacy is not None and "privacy" in ckpt:
                ctx.privacy.load_state(ckpt["privacy"])
            if ctx.defense is not None and "defense" in ckpt:
                ctx.defense.load_state(ckpt["defense"])
            if ctx.dpsgd is not None and "dpsgd" in ckpt:
                ctx.dpsgd.load_state(ckpt["dpsgd"])
            if ctx.feedback is not None and "selection" in ckpt:
                ctx.feedback.load_state(ckpt["selection"])
            first = ckpt["round"] + 1
            prior_wall = ckpt.get("wall_time_s", 0.0)
            rows, ledger = run.truncate_to(ckpt["round"])
            ctx.ledger = ledger
        else:
            run.create(config)
        ctx.run_dir = run.path
        rounds = config.training.rounds
        target = config.training.target_accuracy
        clock = rows[-1]["clock_s"] if rows else 0.0
        reached = rounds_to_target(rows, target) is not None  # a resumed run may be done
        with _progress(progress, config) as bar:
            task = bar.add_task("rounds", total=rounds, completed=first, status="")
            for rnd in range(first, rounds):
                if reached:
                    break
                n_before = len(ctx.ledger)
                ctx.round_start_s = clock
                report = scheme.run_round(rnd)
                new_events = ctx.ledger.since(n_before)
                this_round = Ledger(new_events)  # per-round queries never rescan the run
                clock += report.latency_s
                final = rnd == rounds - 1
                metrics: dict[str, Any] = {"accuracy": None, "large_accuracy": None, "loss": None}
                if final or (rnd + 1) % config.engine.eval_every == 0:
                    metrics = dict(scheme.evaluate())
                row = {
                    "round": rnd,
                    **metrics,
                    "train_loss": report.train_loss,
                    "latency_s": report.latency_s,
                    "clock_s": clock,
                    "participants": report.participants,
                    "dropped": len(report.dropped),
                    "dropped_reasons": dropped_reasons(report.dropped),
                    "bytes_up": this_round.bytes_up(),
                    "bytes_down": this_round.bytes_down(),
                    "device_energy_j": this_round.device_energy_j(),
                }
                row.update(report.notes)
                moving = [c.mobile for c in ctx.clients if c.mobile is not None]
                if moving:  # handovers of the moving devices during the round
                    row["handovers"] = sum(m.handovers(ctx.round_start_s, clock) for m in moving)
                if ctx.privacy is not None:
                    row["epsilon"] = ctx.privacy.epsilon(rnd + 1)
                    row["clipping_norm"] = ctx.privacy.dp.last_clip
                    row["unclipped_fraction"] = ctx.privacy.dp.last_unclipped
                if ctx.dpsgd is not None:
                    row["epsilon"] = ctx.dpsgd.epsilon()
                rows.append(row)
                run.append_round(row, new_events, report.dropped)
                run.save_checkpoint(
                    {
                        "round": rnd,
                        "scheme": scheme.state(),
                        **({"privacy": ctx.privacy.state()} if ctx.privacy else {}),
                        **({"dpsgd": ctx.dpsgd.state()} if ctx.dpsgd else {}),
                        **({"defense": ctx.defense.state()} if ctx.defense else {}),
                        **({"selection": ctx.feedback.state()} if ctx.feedback else {}),
                        "wall_time_s": prior_wall + time.perf_counter() - started,
                    }
                )
                acc = row["accuracy"]
                status = f"acc {acc:.3f}" if acc is not None else ""
                bar.update(task, advance=1, status=f"{status}  sim {clock:.1f}s")
                reached = rounds_to_target([row], target) is not None
        summary = summarize(
            ctx,
            scheme,
            rows,
            ctx.ledger,
            wall_time_s=prior_wall + time.perf_counter() - started,
        )
        if config.attack is not None and config.attack.clean_twin:
            clean = run_experiment(
                clean_twin(config), out=run.path / "clean", backend=backend,
                resume=resume and (run.path / "clean").exists(), progress=progress,
            )  # fmt: skip
            summary["clean_accuracy"] = clean["accuracy"]
            summary["accuracy_drop"] = (
                None if clean["accuracy"] is None or summary["accuracy"] is None
                else clean["accuracy"] - summary["accuracy"]
            )  # fmt: skip
        run.write_summary(summary)
        return summary
    finally:
        ctx.close()


def clean_twin(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` without its attack and its malicious devices (the defense stays): what the
    attack costs is the difference."""
    data = config.model_dump(exclude_unset=True)
    data.pop("attack", None)
    for group in data["topology"]["devices"]:
        group.pop("malicious", None)
    return parse_config(data)


class _NullProgress:
    def __enter__(self) -> _NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None


def _progress(enabled: bool, config: ExperimentConfig) -> Any:
    if not enabled:
        return _NullProgress()
    return Progress(
        TextColumn(f"[bold]{config.scheme.name}[/] on {config.task.dataset}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} rounds"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
