"""The example sweep's report in a real headless Chromium (Debian's ``chromium``; .ci/run
installs it): it loads without console errors and every plot is there, decoded and drawn.

The sweep is examples/sweep_fleet.yaml with its grid narrowed by ``--grid`` (two schemes,
two links, one distance, one round), so the report has every section of the full one.
A screenshot of the page is written to ``$TINYLARGE_SCREENSHOTS`` when that is set.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from tests.chromium import find_chromium, open_page

from tinylarge.cli.app import main

REPO = Path(__file__).resolve().parents[2]

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium is not installed (apt-get install chromium; .ci/run installs it)",
)


@needs_chromium
def test_the_browser_check_sees_console_errors_and_broken_images(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text(
        "<!doctype html><title>bad</title><script>console.error('boom'); nothere();</script>"
        "<img alt='gone' src='missing.png'>"
    )
    seen = open_page(page)
    assert seen.title == "bad"
    assert any("boom" in e for e in seen.errors)
    assert any("nothere" in e for e in seen.errors)
    assert any("ERR_FILE_NOT_FOUND" in e for e in seen.errors)
    assert seen.images[0]["naturalWidth"] == 0


@needs_chromium
@pytest.mark.slow
def test_example_sweep_report_loads_clean_with_its_plots(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    narrow = [
        "--grid", "scheme.name=fedavg,kd",
        "--grid", "topology.devices.*.link=ble-2m,nr-sub6",
        "--grid", "topology.devices.*.distance_m=10",
        "--grid", "training.rounds=1",
    ]  # fmt: skip
    example = str(REPO / "examples" / "sweep_fleet.yaml")
    assert main(["sweep", example, *narrow, "--out", str(out), "--quiet"]) == 0
    report = out / "report.html"
    seen = open_page(report, width=1200, height=900)
    assert seen.errors == []
    assert seen.title == "tinylarge sweep sweep"
    alts = [img["alt"] for img in seen.images]
    for plot in (
        "Pareto front: accuracy against device energy",
        "Pareto front: accuracy against simulated latency",
        "Pareto front: accuracy against bytes on air",
        "Device energy per scheme",
        "Bytes on air per scheme",
        "Energy per device a round, per profile and scheme",
    ):
        assert plot in alts
    for img in seen.images:  # decoded by the browser and laid out at a visible size
        assert img["complete"], img["alt"]
        assert img["naturalWidth"] > 300, img["alt"]
        assert img["width"] > 300, img["alt"]
    import matplotlib.image

    shot = matplotlib.image.imread(io.BytesIO(seen.screenshot), format="png")
    assert shot.shape[1] <= 1200  # no wider than the window: nothing overflows sideways
    assert shot.shape[0] > 6 * 300  # the whole page: six plots and the tables
    assert float(shot.std()) > 0.05  # not a blank page
    saved = os.environ.get("TINYLARGE_SCREENSHOTS")
    if saved:
        Path(saved).mkdir(parents=True, exist_ok=True)
        (Path(saved) / "sweep_report.png").write_bytes(seen.screenshot)
        shutil.copy(report, Path(saved) / "sweep_report.html")
