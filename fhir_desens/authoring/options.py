"""What a table and the command's options define: its solutions, its dose unit, and the checks
that refuse options which do not fit the table (exit 2, naming the option or row)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from fhir_desens.authoring.table import TableError, TableRow
from fhir_desens.protocol.model import Preparation, ProtocolKind
from fhir_desens.protocol.quantity import Dimension, Quantity, concentration_base, plain, unit

__all__ = [
    "ROUTES",
    "SCALINGS",
    "AuthorOptions",
    "TableSolution",
    "apply_preparations",
    "check_bag_volumes",
    "check_options",
    "dose_dimension",
    "table_solutions",
]

ROUTES = {"oral": "oral", "iv": "IV"}
SCALINGS = ("fixed", "proportional")


@dataclass(frozen=True)
class AuthorOptions:
    """The command line's choices, parsed."""

    id: str
    title: str
    drug: str
    route: str  # oral | iv
    interval_minutes: Decimal | None = None
    scaling: str | None = None  # fixed | proportional; None: by the table's kind
    bag_volumes_ml: Mapping[str, Decimal] = field(default_factory=dict)
    preparations: Mapping[str, Preparation] = field(default_factory=dict)
    source: str | None = None
    diluent: str | None = None  # what every solution is made up in (None: not stated by the table)
    version: str = "1.0.0"
    table_name: str = "table"


@dataclass
class TableSolution:
    label: str
    number: int
    concentration: Quantity | None  # None: dose-alone rows (each prepared as one unit dose)
    first_row: int
    used_ml: Decimal = Decimal(0)


def table_solutions(rows: Sequence[TableRow], source: str) -> dict[str, TableSolution]:
    found: dict[str, TableSolution] = {}
    for row in rows:
        known = found.get(row.solution)
        if known is None:
            found[row.solution] = TableSolution(row.solution, len(found) + 1, row.concentration, row.row)
            continue
        if known.concentration != row.concentration:
            was = "no concentration" if known.concentration is None else str(known.concentration)
            raise TableError(
                source,
                row.row,
                "concentration",
                f"solution {row.solution} is {was} in row {known.first_row}",
                "one concentration per solution label (use another label for another solution)",
            )
    return found


def dose_dimension(rows: Sequence[TableRow], source: str) -> Dimension:
    dimension: Dimension | None = None
    for row in rows:
        for column, value in (("dose", row.dose), ("cumulative", row.cumulative)):
            if value is not None:
                here: Dimension = value.dimension
            elif column == "dose" and row.concentration is not None:
                here = concentration_base(unit(row.concentration.unit))
            else:
                continue
            if dimension is None:
                dimension = here
            elif here is not dimension:
                raise TableError(
                    source,
                    row.row,
                    column,
                    f"{here.value} here, {dimension.value} in earlier rows",
                    "one kind of dose unit for the whole table (mg or units)",
                )
    if dimension is None:
        raise TableError(source, None, "dose", "no row gives a dose or a concentration")
    return dimension


def check_options(kind: ProtocolKind, scaling: str, options: AuthorOptions, rows: Sequence[TableRow]) -> None:
    source = options.table_name
    if scaling not in SCALINGS:
        raise TableError("--scaling", None, None, f"unknown scaling '{scaling}'", " or ".join(SCALINGS))
    if kind is ProtocolKind.DISCRETE and scaling != "fixed":
        raise TableError(
            "--scaling",
            None,
            None,
            "a table of discrete doses is planned as written (fixed)",
            "--scaling fixed, or a table of infusion rows (rate_ml_h) for proportional scaling",
        )
    if kind is ProtocolKind.DISCRETE and options.interval_minutes is None:
        raise TableError(
            "--interval",
            None,
            None,
            "a table of discrete doses needs the minutes between doses",
            "e.g. --interval 30",
        )
    if kind is ProtocolKind.INFUSION and options.interval_minutes is not None:
        raise TableError(
            "--interval",
            None,
            None,
            "infusion rows give their own minutes; --interval is for discrete doses",
            "omit --interval",
        )
    if options.route not in ROUTES:
        raise TableError("--route", None, None, f"unknown route '{options.route}'", "oral or iv")
    labels = {row.solution for row in rows}
    for given in (*options.bag_volumes_ml, *options.preparations):
        if given not in labels:
            raise TableError(
                source,
                None,
                "solution",
                f"bag {given} is not a solution label of the table",
                ", ".join(sorted(labels)),
            )


def apply_preparations(
    solutions: dict[str, TableSolution], options: AuthorOptions, rows: Sequence[TableRow]
) -> None:
    """A stated preparation defines the exact concentration; the table's is then a stated value."""
    for label, prep in options.preparations.items():
        solution = solutions[label]
        if solution.concentration is None:
            row = next(r for r in rows if r.solution == label)
            raise TableError(
                options.table_name,
                row.row,
                "concentration",
                f"solution {label} has a preparation but the table gives no concentration",
            )
        made = prep.concentration()
        if concentration_base(unit(made.unit)) is not concentration_base(unit(solution.concentration.unit)):
            raise TableError(
                "--solutions",
                None,
                "drug",
                f"solution {label}: {prep.drug_amount} does not fit {solution.concentration}",
            )
        solution.concentration = made  # the rows' doses are computed from what the recipe makes


def check_bag_volumes(solutions: Mapping[str, TableSolution], options: AuthorOptions, source: str) -> None:
    for label, solution in solutions.items():
        prep = options.preparations.get(label)
        given = options.bag_volumes_ml.get(label)
        prepared = prep.final_volume_ml if prep is not None else given
        if prep is not None and given is not None and given != prepared:
            raise TableError(
                "--bag-volumes",
                None,
                None,
                f"bag {label} is {plain(given)} mL but its preparation makes {plain(prep.final_volume_ml)} mL",
                "the same volume, or only one of them",
            )
        if prepared is not None and solution.used_ml > prepared:
            raise TableError(
                source,
                solution.first_row,
                "volume_ml",
                f"the steps draw {plain(solution.used_ml)} mL from bag {label} of {plain(prepared)} mL",
                "a larger bag (--bag-volumes) or smaller volumes",
            )
