"""Each scheme's own figures, as tables, read from what a run recorded.

A cascade is judged by its offload fraction against its device-only and server-only
baselines, its latency distribution and its energy per inference on each link; split
learning by its cut and the smashed data it sends; distillation by what it deployed;
the knowledge-transfer schemes by their device and server accuracy side by side. This
module turns ``summary.json`` (and the ledger, for bytes by kind) into those tables once,
for both the HTML report (:mod:`tinylarge.results.report`) and ``tinylarge run``'s
printed summary. A section appears when the run recorded its figures, whatever the
scheme's name, so a new scheme that records the same keys gets the same tables.

Every builder is a pure function of the recorded files; none recomputes a figure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tinylarge.sim.ledger import Ledger


@dataclass(frozen=True)
class Section:
    """One titled table of a scheme's figures, with an optional one-line note."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""


Summary = Mapping[str, Any]
Builder = Callable[[Summary, Sequence[Mapping[str, Any]], Ledger | None], list[Section]]

#: Builders in the order their sections appear; each returns [] when the run has nothing
#: for it.
BUILDERS: list[Builder] = []


def builder(fn: Builder) -> Builder:
    """Register a section builder (appended: sections keep registration order)."""
    BUILDERS.append(fn)
    return fn


def scheme_sections(
    summary: Summary, rows: Sequence[Mapping[str, Any]] = (), ledger: Ledger | None = None
) -> list[Section]:
    """Every section the run's records support, in :data:`BUILDERS` order."""
    out: list[Section] = []
    for build in BUILDERS:
        out += build(summary, rows, ledger)
    return out


def _ms(seconds: Any) -> float | None:
    return None if seconds is None else 1e3 * float(seconds)


def _mj(joules: Any) -> float | None:
    return None if joules is None else 1e3 * float(joules)


_SERVING_HEADERS = (
    "accuracy",
    "offload fraction",
    "latency p50 ms",
    "latency p95 ms",
    "latency mean ms",
    "device mJ / inference",
    "bytes on air / inference",
)


def _serving_cells(f: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        f.get("accuracy"),
        f.get("offload_fraction"),
        _ms(f.get("latency_p50_s")),
        _ms(f.get("latency_p95_s")),
        _ms(f.get("latency_mean_s")),
        _mj(f.get("device_energy_per_inference_j")),
        f.get("bytes_on_air_per_inference"),
    )


@builder
def serving(s: Summary, _rows: Sequence[Mapping[str, Any]], _l: Ledger | None) -> list[Section]:
    """Collaborative inference (cascade, early exit, split inference): the scheme against
    its device-only and server-only baselines on the same requests, then per device group
    and link."""
    inf = s.get("inference")
    if not isinstance(inf, Mapping):
        return []
    base = s.get("baselines") or {}
    rows: list[tuple[Any, ...]] = [(str(s.get("scheme")), *_serving_cells(inf))]
    for name in ("device_only", "server_only"):
        if name in base:
            rows.append((name.replace("_", " "), *_serving_cells(base[name])))
    unserved = inf.get("unserved_requests") or {}
    lost = ", ".join(f"{n} {why}" for why, n in sorted(unserved.items()) if n)
    out = [
        Section(
            "Collaborative inference against its baselines (same run, same requests)",
            ("mode", *_SERVING_HEADERS),
            tuple(rows),
            f"{inf.get('samples')} requests served"
            + (f"; not served: {lost}" if lost else "")
            + ". Latency is end to end per request; energy is the device's (compute + radio).",
        )
    ]
    groups = s.get("by_group") or {}
    if groups:
        group_rows = []
        for group, modes in groups.items():
            for mode, f in modes.items():
                label = str(s.get("scheme")) if mode == "mode" else mode.replace("_", " ")
                group_rows.append((group, label, *_serving_cells(f)))
        out.append(
            Section(
                "Per device group and link",
                ("group / link", "mode", *_SERVING_HEADERS),
                tuple(group_rows),
            )
        )
    parts = s.get("partitions") or {}
    if parts:
        out.append(
            Section(
                f"Partition points (objective: {s.get('objective')})",
                ("group", "partition", "device ops", "bytes up / request", "latency ms", "mJ"),
                tuple(
                    (
                        g,
                        p.get("partition"),
                        f"{p.get('device_ops')} of {p.get('of_ops')}",
                        p.get("up_bytes"),
                        _ms(p.get("latency_s")),
                        _mj(p.get("energy_j")),
                    )
                    for g, p in parts.items()
                ),
            )
        )
    choice = s.get("threshold_choice") or {}
    if choice:
        out.append(
            Section(
                "Thresholds chosen on the validation split",
                ("group", "target", "threshold", "validation accuracy", "offload", "met"),
                tuple(
                    (
                        g,
                        f"{c.get('target')} {c.get('target_value')}",
                        c.get("threshold"),
                        c.get("accuracy"),
                        c.get("offload_fraction"),
                        c.get("met"),
                    )
                    for g, c in choice.items()
                ),
            )
        )
    return out


@builder
def split(s: Summary, _rows: Sequence[Mapping[str, Any]], ledger: Ledger | None) -> list[Section]:
    """Split and federated split learning: each profile's cut, what it keeps on the device
    and what crosses the link (smashed data up, its gradients down)."""
    cuts = s.get("cuts")
    if not isinstance(cuts, Mapping):
        return []
    rounds = max(int(s.get("rounds") or 1), 1)
    rows: list[tuple[Any, ...]] = []
    for key, c in cuts.items():
        pid = key.split("/", 1)[0]
        if not c.get("fits"):
            rows.append((key, None, c.get("reason"), None, None, None, None, None, None))
            continue
        rows.append(
            (
                key,
                c.get("cut"),
                c.get("layer"),
                c.get("params"),
                c.get("train_memory_bytes"),
                c.get("sram_bytes"),
                None
                if ledger is None
                else ledger.bytes_up(what="activations", profile=pid) // rounds,
                None
                if ledger is None
                else ledger.bytes_down(what="gradients", profile=pid) // rounds,
                c.get("leakage"),
            )
        )
    variant = s.get("variant")
    return [
        Section(
            "Cut per device profile" + (f" ({variant}, {s.get('compression')})" if variant else ""),
            (
                "profile",
                "cut",
                "device layers end at",
                "device params",
                "device train memory B",
                "device SRAM B",
                "smashed bytes up / round",
                "gradient bytes down / round",
                "leakage (distance correlation)",
            ),
            tuple(rows),
            f"cut chosen for {s.get('objective')}; bytes per round are the profile's devices "
            "together, from the ledger.",
        )
    ]


@builder
def distillation(
    s: Summary, _rows: Sequence[Mapping[str, Any]], _l: Ledger | None
) -> list[Section]:
    """Distillation: teacher against the deployed student, the artifact, and the fit."""
    art = s.get("artifact")
    teacher = s.get("teacher")
    if not isinstance(art, Mapping) or not isinstance(teacher, Mapping):
        return []
    student = (s.get("model"), art.get("params"), art.get("macs"))
    rows = (
        ("teacher", teacher.get("model"), teacher.get("params"), teacher.get("macs"), None),
        ("student (fp32)", *student, art.get("fp32_bytes")),
        (f"deployed ({art.get('format')})", *student, art.get("bytes")),
    )
    out = [
        Section(
            "Teacher and deployed student",
            ("model", "architecture", "params", "MACs", "artifact bytes"),
            rows,
            f"student accuracy fp32 {s.get('student_fp32_accuracy')}, deployed "
            f"{s.get('accuracy')} ({s.get('accuracy_source')}); artifact {art.get('path')}, "
            f"{art.get('size_ratio')} x smaller than fp32.",
        )
    ]
    fits = s.get("fits") or {}
    per = s.get("per_profile") or {}
    if fits:
        out.append(
            Section(
                "Does the deployed student fit?",
                ("profile", "fits", "stack", "flash B (model)", "peak SRAM B (model)"),
                tuple(
                    (
                        pid,
                        ok,
                        (per.get(pid) or {}).get("stack"),
                        art.get("bytes"),
                        art.get("peak_sram_bytes"),
                    )
                    for pid, ok in fits.items()
                ),
            )
        )
    return out


@builder
def transfer(s: Summary, _rows: Sequence[Mapping[str, Any]], _l: Ledger | None) -> list[Section]:
    """Knowledge transfer and transfer learning (FedGKT, FML, FedDF, TL, FTL): device and
    server accuracy side by side per device profile, with each profile's device model."""
    device = s.get("accuracy_by_profile")
    if not isinstance(device, Mapping):
        return []
    large = s.get("large_accuracy_by_profile") or {}
    models = s.get("device_models") or {}
    rows = []
    for pid, acc in device.items():
        m = models.get(pid) or {}
        rows.append(
            (
                pid,
                m.get("model") if isinstance(m, Mapping) else m,
                m.get("train_memory_bytes") if isinstance(m, Mapping) else None,
                acc,
                large.get(pid),
            )
        )
    server = s.get("server_model") or s.get("shared_model") or {}
    note = f"server model {server.get('model')}" if server else ""
    if s.get("pretrained_accuracy") is not None:
        note += ("; " if note else "") + f"pre-trained accuracy {s['pretrained_accuracy']}"
    return [
        Section(
            "Accuracy per device profile: device model and server model",
            (
                "profile",
                "device model",
                "device train memory B",
                "device accuracy",
                "server accuracy",
            ),
            tuple(rows),
            note,
        )
    ]


@builder
def foundation(s: Summary, _rows: Sequence[Mapping[str, Any]], _l: Ledger | None) -> list[Section]:
    """Federated LoRA: what the adapters save on the uplink against the full model."""
    if "adapter_bytes" not in s:
        return []
    return [
        Section(
            f"Adapters against the full model ({s.get('foundation_model')})",
            ("", "bytes", "bytes up / round"),
            (
                ("adapters", s.get("adapter_bytes"), s.get("adapter_bytes_up_per_round")),
                ("full model", s.get("full_model_bytes"), s.get("full_model_bytes_up_per_round")),
            ),
            f"{s.get('lora_devices')} LoRA devices, {s.get('student_devices')} student devices",
        )
    ]


@builder
def asynchronous(
    s: Summary, _rows: Sequence[Mapping[str, Any]], _l: Ledger | None
) -> list[Section]:
    """Asynchronous FL (FedBuff, FedAsync): how stale the updates the server applied were."""
    if "staleness_mean" not in s:
        return []
    return [
        Section(
            "Asynchronous rounds: server updates and staleness",
            ("server updates", "concurrency", "staleness mean", "staleness p95",
             "staleness max", "updates dropped as too stale"),
            ((s.get("server_updates"), s.get("concurrency"), s.get("staleness_mean"),
              s.get("staleness_p95"), s.get("staleness_max"), s.get("stale_dropped")),),
            "staleness: server updates between a device's download and its update's arrival",
        )
    ]  # fmt: skip


@builder
def hierarchy(s: Summary, _rows: Sequence[Mapping[str, Any]], _l: Ledger | None) -> list[Section]:
    """Hierarchical FL (HierFAVG): each edge server, the devices it serves, its backhaul."""
    edges = s.get("edges")
    if not isinstance(edges, Mapping) or not edges:
        return []
    return [
        Section(
            f"Edge servers (kappa2 = {s.get('kappa2')} edge rounds per cloud round)",
            ("edge", "profile", "backhaul", "devices", "backhaul bytes up",
             "backhaul bytes down", "edge compute s"),
            tuple(
                (name, e.get("profile"), e.get("backhaul"), e.get("devices"),
                 e.get("backhaul_bytes_up"), e.get("backhaul_bytes_down"), e.get("compute_s"))
                for name, e in edges.items()
            ),
        )
    ]  # fmt: skip


@builder
def secure_aggregation(
    s: Summary, rows: Sequence[Mapping[str, Any]], _l: Ledger | None
) -> list[Section]:
    """Secure aggregation (SecAgg+): who survived each round, which rounds aborted and why,
    and what the protocol cost the devices."""
    rounds = [r for r in rows if r.get("secagg_survivors") is not None or r.get("secagg_aborted")]
    if not rounds:
        return []
    note = ""
    if "privacy_device_energy_j" in s:
        note = (
            f"the protocol cost the devices {s['privacy_device_energy_j']:.4g} J and "
            f"{s.get('privacy_device_seconds', 0.0):.4g} s, {s.get('privacy_bytes', 0):,} bytes"
        )
    return [
        Section(
            "Secure aggregation per round",
            ("round", "survivors", "aborted"),
            tuple(
                (int(r["round"]) + 1, r.get("secagg_survivors"), r.get("secagg_aborted") or "")
                for r in rounds
            ),
            note,
        )
    ]


@builder
def privacy(s: Summary, rows: Sequence[Mapping[str, Any]], _l: Ledger | None) -> list[Section]:
    """Differential privacy: epsilon spent after each round."""
    spent = [r for r in rows if r.get("epsilon") is not None]
    if "delta" not in s or not spent:
        return []
    return [
        Section(
            f"Privacy spent per round (delta {s.get('delta')}, {s.get('accountant')} accountant)",
            ("round", "epsilon", "accuracy"),
            tuple((int(r["round"]) + 1, r["epsilon"], r.get("accuracy")) for r in spent),
        )
    ]


@builder
def security(s: Summary, _rows: Sequence[Mapping[str, Any]], _l: Ledger | None) -> list[Section]:
    """Attacks and defenses: what the attack did and what the defense saved."""
    if s.get("attack") is None and s.get("defense") is None:
        return []
    rows: list[tuple[Any, ...]] = [
        ("attack", s.get("attack")),
        ("defense", s.get("defense")),
        ("malicious devices", s.get("malicious")),
        ("accuracy under attack", s.get("accuracy")),
    ]
    if "clean_accuracy" in s:
        rows += [("accuracy of the clean twin run", s["clean_accuracy"])]
        rows += [("accuracy lost to the attack", s.get("accuracy_drop"))]
    if s.get("backdoor_success") is not None:
        rows.append(("backdoor success rate", s["backdoor_success"]))
    if "defense_device_seconds" in s:
        rows.append(("defense: device seconds", s["defense_device_seconds"]))
        rows.append(("defense: device energy J", s.get("defense_device_energy_j")))
    out = [Section("Attack and defense", ("", ""), tuple(rows))]
    inversion = s.get("inversion") or {}
    if inversion:
        cols = ("ssim", "psnr", "baseline_ssim", "baseline_psnr", "class_prior_ssim", "server_s")
        out.append(
            Section(
                f"Model inversion of smashed data (defense: {s.get('defense')})",
                ("cut", "layer", "SSIM", "PSNR dB", "untrained SSIM", "untrained PSNR",
                 "class-prior SSIM", "server s"),
                tuple((k, v.get("layer"), *(v.get(c) for c in cols)) for k, v in inversion.items()),
                "an untrained decoder of the same shape is the baseline the attack must beat; "
                "the class prior (each victim guessed as the mean auxiliary image of its class) "
                "is what an attacker reaches from the class alone, which the model must carry",
            )
        )  # fmt: skip
    return out
