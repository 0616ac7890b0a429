"""The ``symcere`` command: argument parsing and dispatch only; every sub-command lives in its own module
with a ``register(subparsers)`` function that adds its parser and sets ``func``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Must be set before the OpenMP runtime starts (i.e. before torch is imported): spinning OpenMP workers
# oversubscribe small CPUs and slow training many times over.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from symcere import __version__
from symcere.errors import SymcereError

# Sub-command modules, in the order of the pipeline (data -> train -> evaluate -> analyse -> experiments).
_MODULES = ("data_cmds", "train_cmds", "analyze_cmds", "experiment_cmds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symcere", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"symcere {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _MODULES:
        try:
            module = importlib.import_module(f"symcere.cli.{name}")
        except ModuleNotFoundError as exc:  # a sub-command module not present in this build
            if exc.name != f"symcere.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except SymcereError as exc:
        print(f"symcere: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("symcere: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
