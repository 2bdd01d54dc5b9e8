"""The `fhir-desens` command line: the contract scripts and people rely on.

Each subcommand lives in its own module under ``fhir_desens.commands`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import heavy libraries (the FHIR
models, requests, Flask) inside ``run`` only, so ``fhir-desens plan`` starts fast.

Exit statuses come from the error taxonomy (fhir_desens.errors): 0 success, 1 invalid content,
2 unusable input, 3 safety, 4+ server and auth failures. No traceback reaches the user.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from fhir_desens.errors import DesensError

# command name -> module; the order is the order of `fhir-desens --help`.
COMMANDS: dict[str, str] = {
    "protocols": "fhir_desens.commands.protocols",
    "plan": "fhir_desens.commands.plan",
    "replan": "fhir_desens.commands.replan",
    "export": "fhir_desens.commands.export",
    "author": "fhir_desens.commands.author",
    "apply": "fhir_desens.commands.apply",
    "package": "fhir_desens.commands.package",
    "validate": "fhir_desens.commands.validate",
    "import": "fhir_desens.commands.import_",
    "fetch": "fhir_desens.commands.fetch",
    "fhir-server": "fhir_desens.commands.fhir_server",
    "hl7-validator": "fhir_desens.commands.hl7_validator",
    "sandbox": "fhir_desens.commands.sandbox",
    "demo": "fhir_desens.commands.demo",
}


class _Parser(argparse.ArgumentParser):
    """argparse with our exit status (2) and one-line messages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # '-5mg' is a negative dose to refuse with a clear message, not an unknown option.
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fhir-desens", description="Rapid drug desensitization, FHIR-native.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        module = _load(name)
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = _load(args.command)
    try:
        return int(module.run(args))
    except DesensError as error:
        print(f"fhir-desens {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"fhir-desens {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
