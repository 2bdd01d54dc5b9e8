"""Read a hospital's desensitization table (CSV text) into typed rows, refusing what cannot be used.

The header row names the columns (case-insensitive, any order; an unknown or repeated column is
refused). One row per step, in order. Each value is parsed here, so every later error can name the
row and column it came from. Row numbers are the file's line numbers as a spreadsheet shows them
(the header is row 1). Pure: the caller reads the file; nothing here touches the disk.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from fhir_desens.boundary.text import form_text
from fhir_desens.errors import DesensError, InputError
from fhir_desens.protocol.model import Preparation
from fhir_desens.protocol.quantity import (
    ACCEPTED_DOSE_UNITS,
    Dimension,
    Quantity,
    parse_decimal,
    parse_quantity,
)

__all__ = ["COLUMNS", "PREPARATION_COLUMNS", "TableError", "TableRow", "read_preparations", "read_table"]

#: Every column the reader knows, with what it holds (the README's table of the CSV format).
COLUMNS: Mapping[str, str] = {
    "step": "1, 2, 3 ... in order",
    "solution": "the bag or solution label (1, 2, A, B ...)",
    "dose": "the dose with its unit (0.05 mg, 1000 units); checked when derived",
    "concentration": "the solution's concentration with its unit (0.01 mg/mL, 1000 units/mL)",
    "volume_ml": "discrete steps: the volume given, in mL",
    "rate_ml_h": "infusion steps: the pump rate, in mL/h",
    "minutes": "infusion steps: the step's duration (the last may be empty: until the bag is empty)",
    "cumulative": "the running total as printed (checked)",
}
REQUIRED = ("step", "solution")
#: Refuse absurd files before reading them whole (a table has tens of rows, not thousands).
MAX_ROWS = 200
DOSE_DIMENSIONS = (Dimension.MASS, Dimension.ACTIVITY)
MAX_LABEL = 40


class TableError(InputError):
    """Unusable table input: one line naming the row and column (exit status 2)."""

    def __init__(
        self, source: str, row: int | None, column: str | None, problem: str, accepted: str = ""
    ) -> None:
        where = source
        if row is not None:
            where += f" row {row}"
        if column is not None:
            where += f", column {column}" if row is not None else f" column {column}"
        super().__init__(where, problem, accepted or None)
        self.row = row
        self.column = column


@dataclass(frozen=True)
class TableRow:
    """One step as the table gives it; ``None`` where the cell is empty or the column absent."""

    row: int  # line number in the file (header = 1)
    step: int
    solution: str
    dose: Quantity | None = None
    concentration: Quantity | None = None
    volume_ml: Decimal | None = None
    rate_ml_h: Decimal | None = None
    minutes: Decimal | None = None
    cumulative: Quantity | None = None

    @property
    def is_infusion(self) -> bool:
        return self.rate_ml_h is not None


#: What a spreadsheet's own headings usually mean, by their first word ("Bag", "Rate (mL/h)", "Time (min)").
_LIKELY: Mapping[str, str] = {
    "bag": "solution",
    "solution": "solution",
    "step": "step",
    "dose": "dose",
    "concentration": "concentration",
    "conc": "concentration",
    "rate": "rate_ml_h",
    "time": "minutes",
    "duration": "minutes",
    "minutes": "minutes",
    "min": "minutes",
    "volume": "volume_ml",
    "cumulative": "cumulative",
    "total": "cumulative",
}
_WITH_UNITS = ("dose", "concentration", "cumulative")


def _likely(name: str) -> str | None:
    words = re.sub(r"[^a-z]+", " ", name).split()
    likely = _LIKELY.get(words[0]) if words else None
    return likely if likely != name else None


def _unknown(names: list[str]) -> str:
    """ "'bag' (rename it solution), 'dose (mg)' (rename it dose)", and where a heading carried the unit, that
    the cells carry it instead."""
    said = [f"'{name}'" + (f" (rename it {_likely(name)})" if _likely(name) else "") for name in names]
    units = any(_likely(name) in _WITH_UNITS and "(" in name for name in names)
    cells = (
        "; dose, concentration and cumulative cells carry their unit (0.008 mg, 0.016 mg/mL)" if units else ""
    )
    return ", ".join(said) + cells


def _header(fields: list[str], source: str) -> list[str]:
    names = [name.strip().lower() for name in fields]
    unknown = [name or "(empty)" for name in names if name not in COLUMNS]
    if unknown:  # all of them at once: a table exported from a spreadsheet has several
        column = unknown[0] if len(unknown) == 1 else None
        which = _unknown(unknown)
        word = "column" if len(unknown) == 1 else "columns"
        raise TableError(source, 1, column, f"unknown {word} {which}", ", ".join(COLUMNS))
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise TableError(source, 1, name, "the column appears twice")
        seen.add(name)
    for name in REQUIRED:
        if name not in seen:
            raise TableError(source, 1, name, f"the required column '{name}' is missing", ", ".join(COLUMNS))
    return names


def _dose(text: str, source: str, row: int, column: str) -> Quantity:
    try:
        quantity = parse_quantity(text, column)
    except DesensError:
        raise TableError(source, row, column, f"'{text}' is not a dose", ACCEPTED_DOSE_UNITS) from None
    if quantity.dimension not in DOSE_DIMENSIONS:
        raise TableError(source, row, column, f"'{text}' is not a dose", ACCEPTED_DOSE_UNITS)
    if quantity.value < 0:
        raise TableError(source, row, column, f"'{text}' is negative", "a dose of 0 or more")
    return quantity.canonical()


def _concentration(text: str, source: str, row: int) -> Quantity:
    accepted = "mg/mL, mcg/mL, g/mL or units/mL, e.g. 0.01 mg/mL"
    try:
        quantity = parse_quantity(text, "concentration")
    except DesensError:
        raise TableError(source, row, "concentration", f"'{text}' is not a concentration", accepted) from None
    if quantity.dimension is not Dimension.CONCENTRATION:
        raise TableError(source, row, "concentration", f"'{text}' is not a concentration", accepted)
    if quantity.value <= 0:
        raise TableError(source, row, "concentration", f"'{text}' is not above 0", accepted)
    return quantity.canonical()


def _number(text: str, source: str, row: int, column: str) -> Decimal:
    try:
        value = parse_decimal(text, column)
    except InputError:
        raise TableError(
            source, row, column, f"'{text}' is not a plain number", "a number without unit, e.g. 2.5"
        ) from None
    if value <= 0:
        raise TableError(source, row, column, f"{text} is not above 0", "a number above 0")
    return value


def _step_number(text: str, source: str, row: int, expected: int) -> int:
    try:
        number = int(text)
    except ValueError:
        raise TableError(source, row, "step", f"'{text}' is not a step number", "1, 2, 3 ...") from None
    if number != expected:
        raise TableError(
            source,
            row,
            "step",
            f"step {number} is out of order",
            f"step {expected} (one row per step, in order)",
        )
    return number


def _row(cells: dict[str, str], source: str, row: int, expected: int) -> TableRow:
    def cell(name: str) -> str | None:
        value = (cells.get(name) or "").strip()
        return value or None

    step_text, solution = cell("step"), cell("solution")
    if step_text is None:
        raise TableError(source, row, "step", "the step number is empty", "1, 2, 3 ...")
    if solution is None:
        raise TableError(source, row, "solution", "the solution label is empty", "a label such as 1, 2, A, B")
    solution = form_text(solution, f"{source} row {row}, column solution", max_length=MAX_LABEL)
    dose, concentration, cumulative = cell("dose"), cell("concentration"), cell("cumulative")
    volume, rate, minutes = cell("volume_ml"), cell("rate_ml_h"), cell("minutes")
    return TableRow(
        row=row,
        step=_step_number(step_text, source, row, expected),
        solution=solution,
        dose=None if dose is None else _dose(dose, source, row, "dose"),
        concentration=None if concentration is None else _concentration(concentration, source, row),
        volume_ml=None if volume is None else _number(volume, source, row, "volume_ml"),
        rate_ml_h=None if rate is None else _number(rate, source, row, "rate_ml_h"),
        minutes=None if minutes is None else _number(minutes, source, row, "minutes"),
        cumulative=None if cumulative is None else _dose(cumulative, source, row, "cumulative"),
    )


def _delimiter(text: str) -> str:
    """Commas, or semicolons when the header uses them (spreadsheets in decimal-comma locales)."""
    header = text.split("\n", 1)[0]
    return ";" if ";" in header and "," not in header else ","


def read_table(text: str, source: str = "table") -> list[TableRow]:
    """The rows of a CSV table; :class:`TableError` (exit 2) names the row and column of a problem."""
    text = text.removeprefix("\ufeff")  # spreadsheets save UTF-8 with a byte-order mark
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    try:
        fields = next(reader, None)
        if fields is None or not any(f.strip() for f in fields):
            raise TableError(source, 1, None, "the table is empty; the first row must name the columns")
        names = _header(fields, source)
        rows: list[TableRow] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank lines (often at the end of an exported sheet)
            if len(cells) > len(names):
                raise TableError(
                    source, reader.line_num, None, f"{len(cells)} cells for {len(names)} columns"
                )
            if len(rows) >= MAX_ROWS:
                raise TableError(source, reader.line_num, None, f"more than {MAX_ROWS} steps")
            rows.append(_row(dict(zip(names, cells, strict=False)), source, reader.line_num, len(rows) + 1))
    except csv.Error as error:
        raise TableError(source, reader.line_num, None, f"not readable as CSV ({error})") from None
    if not rows:
        raise TableError(source, None, None, "the table has a header but no steps")
    return rows


#: The columns of a ``--solutions`` file: how each bag is prepared (INV-22, INV-23).
PREPARATION_COLUMNS: Mapping[str, str] = {
    "solution": "the label used in the table",
    "bag_ml": "the bag's labelled volume in mL, e.g. 100",
    "overfill_ml": "what the bag holds beyond its label, when the recipe relies on it (e.g. 10)",
    "remove_ml": "diluent removed before the drug is added",
    "drug": "the drug added, with its unit, e.g. 150 mg",
    "drug_ml": "the volume the drug is added in, e.g. 3",
}


def read_preparations(text: str, source: str = "solutions") -> dict[str, Preparation]:
    """Stated preparations by solution label, from CSV text (``--solutions FILE``)."""
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    fields = next(reader, None)
    if fields is None:
        raise TableError(source, 1, None, "the file is empty; the first row must name the columns")
    names = [name.strip().lower() for name in fields]
    for name in names:
        if name not in PREPARATION_COLUMNS:
            raise TableError(source, 1, name, f"unknown column '{name}'", ", ".join(PREPARATION_COLUMNS))
    for name in ("solution", "bag_ml", "drug"):
        if name not in names:
            raise TableError(source, 1, name, f"the required column '{name}' is missing")
    found: dict[str, Preparation] = {}
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        row = reader.line_num
        values = {n: c.strip() for n, c in zip(names, cells, strict=False) if c.strip()}
        label = values.get("solution")
        if label is None or label in found:
            problem = "the solution label is empty" if label is None else f"solution {label} appears twice"
            raise TableError(source, row, "solution", problem)
        if "bag_ml" not in values or "drug" not in values:
            raise TableError(source, row, "bag_ml" if "bag_ml" not in values else "drug", "is empty")

        def ml(name: str, values: dict[str, str] = values, row: int = row) -> Decimal:
            return _millilitres(values, name, source, row)

        found[label] = Preparation(
            bag_volume_ml=ml("bag_ml"),
            drug_amount=_dose(values["drug"], source, row, "drug"),
            drug_volume_ml=ml("drug_ml"),
            removed_ml=ml("remove_ml"),
            overfill_ml=ml("overfill_ml"),
        )
        wrong = _preparation_problem(found[label])
        if wrong:
            raise TableError(source, row, None, f"solution {label}: {wrong}")
    return found


def _millilitres(values: Mapping[str, str], name: str, source: str, row: int) -> Decimal:
    if name not in values:
        return Decimal(0)
    try:
        value = parse_decimal(values[name], name)
    except InputError:
        raise TableError(source, row, name, f"'{values[name]}' is not a number of mL") from None
    if value < 0:
        raise TableError(source, row, name, f"{values[name]} is negative")
    return value


def _preparation_problem(prep: Preparation) -> str | None:
    from fhir_desens.protocol.model import MAX_OVERFILL_FRACTION
    from fhir_desens.protocol.quantity import plain

    if prep.bag_volume_ml <= 0 or prep.drug_amount.value <= 0:
        return "the bag volume and the drug added must be above 0"
    if prep.overfill_ml > prep.bag_volume_ml * MAX_OVERFILL_FRACTION:
        return f"an overfill of {plain(prep.overfill_ml)} mL is implausible for a {plain(prep.bag_volume_ml)} mL bag"
    if prep.removed_ml >= prep.bag_volume_ml + prep.overfill_ml:
        return f"removing {plain(prep.removed_ml)} mL leaves nothing in the bag"
    return None
