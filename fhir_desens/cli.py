"""The `fhir-desens` command line: the contract scripts and people rely on.

Each subcommand lives in its own module under ``fhir_desens.commands`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Only the module of the command being run is imported
(``--help`` lists the others from :data:`COMMANDS`), and command modules import heavy libraries (the
FHIR models, requests, Flask) inside ``run`` only, so ``fhir-desens plan`` starts fast
(``benchmarks/bench_cold_start.py``).

Exit statuses come from the error taxonomy (fhir_desens.errors): 0 success, 1 invalid content,
2 unusable input, 3 safety, 4+ server and auth failures. No traceback reaches the user.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from fhir_desens.errors import DesensError

TYPE_CHECKING = False  # mypy reads this block; typing is not imported at run time (commands start faster)
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

# command name -> (module, the line `fhir-desens --help` shows); the order is the order of `--help`.
# Only the command being run is imported (its module's HELP is its own --help description), so
# `fhir-desens --help` and each command start without importing the others.
COMMANDS: dict[str, tuple[str, str]] = {
    "protocols": ("fhir_desens.commands.protocols", "List the built-in protocols."),
    "plan": ("fhir_desens.commands.plan", "Compute a desensitization plan (table or exact JSON)."),
    "replan": (
        "fhir_desens.commands.replan",
        "After a reaction: the remaining plan for every resume option.",
    ),
    "export": ("fhir_desens.commands.export", "Export protocols as a FHIR R4 Bundle (JSON or XML)."),
    "author": ("fhir_desens.commands.author", "Author a protocol from a CSV table."),
    "apply": ("fhir_desens.commands.apply", "Compute a plan and print its FHIR orders ($apply)."),
    "package": ("fhir_desens.commands.package", "Write protocols as a FHIR NPM package."),
    "validate": ("fhir_desens.commands.validate", "Validate FHIR files (structure, profiles, doses)."),
    "import": ("fhir_desens.commands.import_", "Import protocols into a FHIR server."),
    "fetch": ("fhir_desens.commands.fetch", "Fetch a protocol from a FHIR server."),
    "fhir-server": ("fhir_desens.commands.fhir_server", "Run the development FHIR R4 server."),
    "hl7-validator": ("fhir_desens.commands.hl7_validator", "Run the HL7 validator service."),
    "sandbox": ("fhir_desens.commands.sandbox", "Run the sandbox EHR."),
    "demo": ("fhir_desens.commands.demo", "Start the sandbox EHR and the SMART app together."),
}


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns`` without importing shutil (and the compression modules
    it imports) at every start: ``COLUMNS`` when a positive number, else stdout's terminal, else 80.
    argparse asks once per option, so the usual answers (no ``COLUMNS``, no terminal) raise nothing."""
    text = os.environ.get("COLUMNS")
    if text:
        try:
            if int(text) > 0:
                return int(text)
        except ValueError:
            pass
    try:
        descriptor = sys.__stdout__.fileno()  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # no stdout, or not a file
        return 80
    if not os.isatty(descriptor):
        return 80
    try:
        return os.get_terminal_size(descriptor).columns or 80
    except OSError:
        return 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help layout, as wide as the terminal (argparse's own rule)."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        width = _terminal_columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """argparse with our exit status (2) and one-line messages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        # '-5mg' is a negative dose to refuse with a clear message, not an unknown option.
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _load(name: str) -> ModuleType:
    """The command's module (``__import__``, not ``importlib``: a console script does not import that)."""
    module_name = COMMANDS[name][0]
    __import__(module_name)
    return sys.modules[module_name]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser. With a known ``command`` it holds that command alone (its module imported, its
    arguments added): the others are never looked at, so a command starts without building a parser
    for each of the others. With any other text (``--help``, a typo) every command is listed with its
    line, so ``--help`` and "invalid choice" name them all; with None every command is complete."""
    parser = _Parser(prog="fhir-desens", description="Rapid drug desensitization, FHIR-native.")
    # prog given: argparse would otherwise format a usage line to learn it is "fhir-desens"
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, prog=parser.prog)
    sub.required = True
    for name, (_, line) in COMMANDS.items():
        if command in COMMANDS and name != command:
            continue
        if command is not None and name != command:
            sub.add_parser(name, help=line, description=line)
            continue
        module = _load(name)
        command_parser = sub.add_parser(name, help=line, description=module.HELP)
        module.add_arguments(command_parser)
    return parser


#: Longest command-line argument accepted (a path, a drug name, an identifier).
MAX_ARGUMENT_CHARACTERS = 4096


def _check_arguments(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """Before any work: no invisible or control characters in any argument, and a usable ``--out``."""
    from fhir_desens.boundary.text import form_text

    for name, value in vars(args).items():
        option = "--" + name.replace("_", "-")
        field = option if any(a == option or a.startswith(option + "=") for a in argv) else name
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                form_text(item, field, max_length=MAX_ARGUMENT_CHARACTERS)
    out = getattr(args, "out", None)
    if isinstance(out, str):
        from fhir_desens.io.files import check_output_path

        check_output_path(out)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(arguments[0] if arguments else "")
    args = parser.parse_args(arguments)
    module = _load(args.command)
    try:
        _check_arguments(args, arguments)
        return int(module.run(args))
    except DesensError as error:
        print(f"fhir-desens {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"fhir-desens {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # the contract: one line, never a traceback
        print(
            f"fhir-desens {args.command}: internal error ({type(error).__name__}); "
            "please report it with the command line that caused it",
            file=sys.stderr,
        )
        return 70  # EX_SOFTWARE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
