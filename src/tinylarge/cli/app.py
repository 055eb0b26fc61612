"""Entry point of the ``tinylarge`` command line.

A thin argparse app, one module per command under :mod:`tinylarge.cli`; each
module exposes ``register(subparsers)`` which adds its parser and sets
``func`` to a ``(args) -> int`` handler. User errors (a
:class:`~tinylarge.errors.TinylargeError` or a bad flag) end with one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

import tinylarge.cli
from tinylarge import __version__
from tinylarge.errors import USER_ERROR_EXIT_CODE, TinylargeError


def command_modules() -> list[ModuleType]:
    """Every module of :mod:`tinylarge.cli` with a ``register`` function, in ``ORDER``."""
    modules = []
    for info in pkgutil.iter_modules(tinylarge.cli.__path__):
        if info.name.startswith("_") or info.name == "app":
            continue
        module = importlib.import_module(f"tinylarge.cli.{info.name}")
        if hasattr(module, "register"):
            modules.append(module)
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT_CODE)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="tinylarge",
        description="TinyML and LargeML integration over 5G/6G networks.",
    )
    parser.add_argument("--version", action="version", version=f"tinylarge {__version__}")
    sub = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=OneLineParser, required=True
    )
    for module in command_modules():
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; ``argv`` defaults to ``sys.argv[1:]``. Returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except TinylargeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


def entry() -> None:
    """Console-script entry point."""
    raise SystemExit(main())


if __name__ == "__main__":
    entry()
