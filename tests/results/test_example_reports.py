"""Every example config's run report, opened in a real headless Chromium (Debian's
``chromium``; .ci/run installs it): it loads without console errors, every plot decodes,
and it shows the figures its scheme is judged by (results/figures.py), not only the
federated-learning template.

Each example runs reduced by ``TINYLARGE_QUICK`` (tinylarge.cli._config.reduced: at most
2 rounds, here 1, and 1,000 training samples), as ``tinylarge run`` would run it with that
switch set: the figures' presence is under test, not their values.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests.chromium import find_chromium, open_page

from tinylarge.cli._config import QUICK_ENV, check_scheme, load_user_config
from tinylarge.config import ExperimentConfig
from tinylarge.results.report import build_report
from tinylarge.sim.engine import run_experiment

REPO = Path(__file__).resolve().parents[2]
#: Every example config that describes a run; a config with a ``sweep:`` grid is a sweep,
#: whose report (tests/results/test_sweep_report_browser.py) is the one a user opens.
EXAMPLES = [
    p
    for p in sorted((REPO / "examples").glob("*.yaml"))
    if "sweep" not in yaml.safe_load(p.read_text())
]

#: The section (or plot) title that shows a scheme's own figures.
OWN_FIGURES = {
    **dict.fromkeys(
        ("cascade", "early-exit", "split-inference"),
        "Collaborative inference against its baselines",
    ),
    **dict.fromkeys(("sl", "fsl"), "Cut per device profile"),
    "kd": "Teacher and deployed student",
    **dict.fromkeys(
        ("fedgkt", "fml", "feddf", "tl", "ftl"), "Accuracy per device profile: device model"
    ),
    "ffm": "Adapters against the full model",
    **dict.fromkeys(("fedbuff", "fedasync"), "Asynchronous rounds: server updates and staleness"),
    "hierfavg": "Edge servers",
    **dict.fromkeys(
        ("fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad"), "Accuracy per round"
    ),
}


def expected_titles(cfg: ExperimentConfig) -> list[str]:
    """What the report of ``cfg`` must show: its scheme's own figures, and the privacy,
    attack and secure-aggregation figures when the config asks for them."""
    titles = [OWN_FIGURES[cfg.scheme.name]]
    raw = cfg.model_dump(exclude_unset=True)
    privacy = raw.get("privacy") or {}
    if privacy.get("dp") or privacy.get("dpsgd"):
        titles.append("Privacy spent per round")
    if privacy.get("secagg"):
        titles.append("Secure aggregation per round")
    if raw.get("attack") or raw.get("defense"):
        titles.append("Attack and defense")
    return titles


def test_every_scheme_of_the_examples_has_its_figures_named() -> None:
    from tinylarge.config import load_config

    assert len(EXAMPLES) >= 25
    names = {load_config(p).scheme.name for p in EXAMPLES}
    assert names <= set(OWN_FIGURES), names - set(OWN_FIGURES)


@pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium is not installed (apt-get install chromium; .ci/run installs it)",
)
@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_example_report_shows_its_schemes_figures_in_a_browser(
    example: Path, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(QUICK_ENV, "1")
    cfg = load_user_config(example)
    cfg = cfg.with_overrides(training={**cfg.training.model_dump(exclude_unset=True), "rounds": 1})
    check_scheme(cfg, source=str(example))
    out = tmp_path / "run"
    run_experiment(cfg, out=out, progress=False)
    page = build_report(out)
    html = page.read_text()
    missing = [t for t in expected_titles(cfg) if t not in html]
    assert not missing, f"{example.name}: the report lacks {missing}"
    seen = open_page(page)
    assert seen.errors == []
    assert seen.images, "no plot in the report"
    broken = [i["alt"] for i in seen.images if not (i["complete"] and i["naturalWidth"] > 0)]
    assert not broken, f"plots that did not decode: {broken}"
