"""Extract the published MLPerf Tiny results (rounds v0.5 to v1.3) into a CSV of facts.

Reads local mirrors of the public result repositories (mlcommons/tiny_results_vX.Y, one bare
git directory each) and writes one row per (round, submitter, system, benchmark): board, SoC,
core, clock, inference stack, median throughput (performance mode), median energy and the
energy run's throughput (energy mode, where published), and the source (repository, path,
commit) of every figure. Only the figures are carried over; no code or text of the
repositories.

    python bench/mlperf_tiny_extract.py MIRROR_ROOT > src/tinylarge/hardware/mlperf_tiny_results.csv

MIRROR_ROOT holds ``mlcommons+tiny_results_vX.Y/repo`` for each round (the layout of the
session's ``fetch`` tool).
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROUNDS = ("0.5", "0.7", "1.0", "1.1", "1.2", "1.3")
BENCHMARKS = {
    "ad": "ad",
    "ic": "ic",
    "kws": "kws",
    "vww": "vww",
    "sww": "sww",
    "anomaly_detection": "ad",
    "image_classification": "ic",
    "keyword_spotting": "kws",
    "visual_wake_words": "vww",
}
COLUMNS = (
    "round", "submitter", "system", "board", "soc", "processor", "clock_mhz", "core",
    "accelerator", "software", "stack", "device", "variant", "precision", "benchmark",
    "throughput_inf_s", "latency_ms", "energy_uj", "energy_throughput_inf_s", "source_repo",
    "source_commit", "performance_path", "energy_path", "system_path",
)  # fmt: skip


def git(gitdir: Path, *args: str) -> str:
    out = subprocess.run(["git", "--git-dir", str(gitdir), *args], capture_output=True, check=True)
    return out.stdout.decode("utf-8", "replace")


def load_json(text: str) -> dict[str, object]:
    """A system description; a few published files miss commas between fields."""
    fixed = re.sub(r"([}\"])\s*\n(\s*\")", r"\1,\n\2", text)
    fixed = re.sub(r",(\s*[}\]])", r"\1", fixed)
    fixed = "".join(c if c >= " " or c in "\n\t" else " " for c in fixed)
    try:
        data = json.loads(fixed)
    except json.JSONDecodeError:
        return {}
    return {str(k).strip(): v for k, v in data.items()} if isinstance(data, dict) else {}


def median_of(text: str, what: str) -> float | None:
    """The reported median (``Median throughput is X``), else the median of the windows."""
    if what == "throughput":
        m = re.findall(r"Median throughput is\s+([0-9.]+)", text)
        windows = re.findall(r"Throughput\s*:\s*([0-9.]+)", text)
    else:
        m = re.findall(r"Median energy cost is\s+([0-9.]+)\s*uJ", text)
        windows = re.findall(r"Energy/Inf\s*:\s*([0-9.]+)\s*uJ", text)
    if m:
        return float(m[-1])
    if windows:
        return statistics.median(float(w) for w in windows)
    return None


def norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def find_system(system: str, candidates: list[str]) -> str | None:
    """The systems/*.json describing the result folder ``system`` (names differ in case,
    separators and order of the stack and board parts)."""
    target = norm(system.replace("/", ""))
    parts = [norm(p) for p in system.split("/")]
    best, best_score = None, 0.0
    for c in candidates:
        name = norm(
            Path(c).stem.replace("system_description", "").replace("System_Description", "")
        )
        if name == target:
            return c
        score = sum(len(p) for p in parts if p and p in name) / max(len(target), 1)
        score -= 0.001 * abs(len(name) - len(target))
        if score > best_score:
            best, best_score = c, score
    return best if best_score > 0.5 else (candidates[0] if len(candidates) == 1 else None)


def text_of(value: object) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} {text_of(v)}" for k, v in value.items())
    return str(value or "").strip()


#: Board name (normalised) -> tinylarge catalogue id of the part the board carries.
DEVICES = {
    "nucleol4r5zi": "stm32l4r5",
    "nucleol4r5zip": "stm32l4r5",
    "nucleoh7a3ziq": "stm32h7a3",
    "nucleoh7a3zi": "stm32h7a3",
    "nucleou575ziq": "stm32u575",
    "bu585iiot02a": "stm32u585",
    "discof746ng": "stm32f746",
    "cy8cproto0624343w": "psoc62",
    "ekra6m4": "ra6m4",
    "ekra8d1": "ra8d1",
    "xg24dk2601b": "efr32mg24",
    "nrf5340dk": "nrf5340",
    "numakerm467hj": "m467",
    "nucleog0b1re": "stm32g0b1",
    "nucleou385rgq": "stm32u385",
    "nucleou3c5zit6q": "stm32u3c5",
}


def variant_of(system: str) -> str:
    """A submission's named build variant (Bosch's max_performance / min_ram), else ''."""
    m = re.search(r"(max_performance|min_ram)", system)
    return m.group(1) if m else ""


def core_class(processor: str, accelerator: str) -> str:
    p = processor.lower()
    if "m0+" in p:
        return "m0plus"
    if "m85" in p:
        return "m85"
    if "m33" in p:
        return "m33"
    if "m7" in p:
        return "m7"
    if re.search(r"m4\b|m4f|m4 ", p + " "):
        return "m4f"
    return "other"


def stack_of(fields: dict[str, object], submitter: str, system: str, core: str) -> str:
    """The named inference stack of a submission (docs/devices.md lists the names)."""
    sw = " ".join(
        text_of(fields.get(k))
        for k in ("Inference Framework", "Software Libraries", "ML Model Compiler(s)")
    ).lower()
    sysl = system.lower()
    if m := re.search(r"x-cube-ai v?(\d+)\.(\d+)", sw + " " + sysl):
        return f"x-cube-ai@{m.group(1)}.{m.group(2)}"
    if "stedge-ai" in sw:
        return "stedge-ai-internal"
    if "plumerai" in sw:
        # v0.7 and v1.0 name no version (the 2022 engine); v1.1 names 2023.05
        return "plumerai@2023.05" if "2023.05" in sw else "plumerai@2022"
    if "hardware-aware lowering" in sw or "hale" in sw:
        m = re.search(r"version (\d+(?:\.\d+)*)", sw)
        return f"hale@{m.group(1)}" if m else "hale"
    if "onnc" in sw:
        return "onnc"
    if "microtvm" in sw or "microtvm" in sysl:
        return "microtvm-cmsis-nn" if ("cmsis" in sw or "cmsis" in sysl) else "microtvm-native"
    if "gecko" in sw and "mvp" in text_of(fields.get("Accelerator")).lower():
        return "tflm-silabs-mvp"
    if submitter == "reference":
        return "tflm-reference"
    if submitter.lower() == "renesas" and core != "other":
        return "tflm-cmsis-nn"  # the project vendors TFLite Micro with its CMSIS-NN kernels
    return "other"


def rows_for_round(root: Path, rnd: str) -> list[dict[str, object]]:
    gitdir = root / f"mlcommons+tiny_results_v{rnd}" / "repo"
    commit = git(gitdir, "rev-parse", "HEAD").strip()
    files = git(gitdir, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    pattern = re.compile(
        r"^closed/(?P<sub>[^/]+)/results/(?P<sys>.+)/(?P<bm>[a-z_]+)/(?P<mode>performance|energy)/"
        r"(?:performance_|energy_)?results\.txt$"
    )
    found: dict[tuple[str, str, str], dict[str, str]] = {}
    for f in files:
        if "/._" in f:
            continue
        m = pattern.match(f)
        if m and m["bm"] in BENCHMARKS:
            key = (m["sub"], m["sys"], BENCHMARKS[m["bm"]])
            found.setdefault(key, {})[m["mode"]] = f
    systems: dict[str, list[str]] = {}
    for f in files:
        if f.startswith("closed/") and "/systems/" in f and f.endswith(".json") and "/._" not in f:
            systems.setdefault(f.split("/")[1], []).append(f)
    out = []
    for (sub, system, bm), modes in sorted(found.items()):
        if "performance" not in modes:
            continue
        perf = median_of(git(gitdir, "show", f"HEAD:{modes['performance']}"), "throughput")
        if perf is None:
            continue
        energy = energy_tp = None
        if "energy" in modes:
            etext = git(gitdir, "show", f"HEAD:{modes['energy']}")
            energy, energy_tp = median_of(etext, "energy"), median_of(etext, "throughput")
        sys_path = find_system(system, systems.get(sub, []))
        fields = load_json(git(gitdir, "show", f"HEAD:{sys_path}")) if sys_path else {}
        processor = text_of(fields.get("Processor(s) Name"))
        freq = text_of(fields.get("Processor(s) Frequencies"))
        fm = re.search(r"([0-9.]+)\s*(MHz|GHz|M\b)", freq, re.I)
        clock = (
            float(fm.group(1)) * (1000 if fm and fm.group(2).lower() == "ghz" else 1)
            if fm
            else None
        )
        accelerator = text_of(fields.get("Accelerator"))
        core = core_class(processor, accelerator)
        software = " / ".join(
            dict.fromkeys(
                s
                for k in ("Inference Framework", "ML Model Compiler(s)", "Software Libraries")
                if (s := text_of(fields.get(k)))
            )
        )
        precision = "fp32" if "float" in system.lower() else "int8"
        out.append(
            {
                "round": f"v{rnd}",
                "submitter": sub,
                "system": system,
                "board": text_of(fields.get("Board Name")),
                "soc": text_of(fields.get("SoC Name")),
                "processor": processor,
                "clock_mhz": f"{clock:g}" if clock else "",
                "core": core,
                "accelerator": accelerator,
                "software": software,
                "stack": stack_of(fields, sub, system, core),
                "device": DEVICES.get(norm(text_of(fields.get("Board Name"))), "")
                if core != "other"
                else "",
                "variant": variant_of(system),
                "precision": precision,
                "benchmark": bm,
                "throughput_inf_s": f"{perf:g}",
                "latency_ms": f"{1e3 / perf:.6g}",
                "energy_uj": f"{energy:g}" if energy is not None else "",
                "energy_throughput_inf_s": f"{energy_tp:g}" if energy_tp is not None else "",
                "source_repo": f"https://github.com/mlcommons/tiny_results_v{rnd}",
                "source_commit": commit,
                "performance_path": modes["performance"],
                "energy_path": modes.get("energy", ""),
                "system_path": sys_path or "",
            }
        )
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path("/work/.mirror")
    writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for rnd in ROUNDS:
        for row in rows_for_round(root, rnd):
            writer.writerow(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
