"""The ``symcere`` command line.

:mod:`symcere.cli.parser` builds the whole argument tree in one place; :mod:`symcere.cli.commands` holds one
small function per sub-command that calls library code. :func:`main` parses, dispatches and turns a
:class:`~symcere.errors.SymcereError` into ``symcere: error: ...`` on stderr with exit status 2.
"""

from __future__ import annotations

import os
import sys

# Must be set before the OpenMP runtime starts (i.e. before torch is imported): spinning OpenMP workers
# oversubscribe small CPUs and slow training many times over.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from symcere.cli.parser import build_parser
from symcere.errors import SymcereError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except SymcereError as exc:
        from symcere.data.records import printable

        lines = str(exc).split("\n")  # newlines are the message's own; any other control character is escaped
        print("symcere: error: " + "\n".join(printable(line, 10_000) for line in lines), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("symcere: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
