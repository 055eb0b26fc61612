"""The README's tour runs as written, so the README cannot drift from the command line.

Every ``tinylarge ...`` line of the README's shell blocks runs, in the README's order, in a
fresh working directory that looks like a checkout (``examples/`` and ``../shared/datasets``
where the README expects them), through the same entry point as the installed command.
Long runs are cut down by the environment switch ``TINYLARGE_QUICK`` (at most 2 rounds and
2,000 training samples, :func:`tinylarge.cli._config.reduced`), never by editing a command.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from tests.conftest import REPO

from tinylarge.cli._config import QUICK_ENV
from tinylarge.cli.app import main


def readme_commands(text: str) -> list[str]:
    """The ``tinylarge`` command lines of the ```sh blocks, comments and prompts stripped,
    backslash continuations joined.

    >>> readme_commands("```sh\\ntinylarge devices   # the catalogue\\nmake test\\n```\\n")
    ['tinylarge devices']
    """
    out: list[str] = []
    for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("tinylarge "):
                out.append(re.sub(r"\s+#.*$", "", line).strip())
    return out


COMMANDS = readme_commands((REPO / "README.md").read_text())


def test_the_readme_has_a_tour() -> None:
    assert len(COMMANDS) >= 20, COMMANDS
    assert "tinylarge run examples/quickstart.yaml --out runs/quickstart" in COMMANDS


def test_every_command_of_the_readme_tour_runs(
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "main"
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "datasets").symlink_to(data_dir)
    monkeypatch.chdir(work)
    monkeypatch.setenv(QUICK_ENV, "1")
    monkeypatch.setenv("TINYLARGE_DATA", "../shared/datasets")
    failed = []
    for command in COMMANDS:
        code = main(shlex.split(command)[1:])
        err = capsys.readouterr().err.strip().splitlines()
        if code != 0:
            failed.append(f"{command!r} exited {code}: {err[-1] if err else ''}")
    assert not failed, "\n".join(failed)
