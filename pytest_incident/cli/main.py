# `pytest-incident COMMAND ...`: the console script's entry point and its subcommands.
#
# Exit status: a subcommand's own (see its --help); 2 for a usage mistake (argparse's).
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pytest_incident.cli import freeze, load, record, sandbox, schema, tail, validate


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="pytest-incident",
        description="Turn production incidents into regression tests (the pytest plugin's "
        "command line; replays themselves run under pytest: pytest --incident=NAME).",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sandbox.add_parser(commands)
    record.add_parser(commands)
    tail.add_parser(commands)
    freeze.add_parser(commands)
    schema.add_parser(commands)
    load.add_parser(commands)
    validate.add_parser(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
