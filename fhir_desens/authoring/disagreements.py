"""Stated values that the exact arithmetic does not round to, collected for one refusal (exit 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from fhir_desens.authoring.options import AuthorOptions, TableSolution
from fhir_desens.authoring.table import TableRow
from fhir_desens.errors import ValidationFailed
from fhir_desens.protocol.quantity import Quantity, display, plain, unit
from fhir_desens.protocol.stated import agrees, decimals_shown

__all__ = ["Disagreement", "StatedValuesDisagree", "check_stated", "preparation_disagreements"]


@dataclass(frozen=True)
class Disagreement:
    """A stated value that the exact arithmetic does not round to."""

    row: int
    step: int | None
    column: str
    stated: Quantity
    computed: Quantity

    def line(self) -> str:
        where = f"row {self.row}, step {self.step}" if self.step is not None else f"row {self.row}"
        return f"{where}, column {self.column}: stated {self.stated}, computed {exact_text(self.computed)}"


class StatedValuesDisagree(ValidationFailed):
    """Exit status 1: the table states values its own numbers do not give; nothing is written."""

    def __init__(self, source: str, disagreements: Sequence[Disagreement]) -> None:
        lines = "\n".join(f"  {d.line()}" for d in disagreements)
        super().__init__(
            f"{source}: {len(disagreements)} stated value(s) disagree with the exact arithmetic "
            f"(rule: the exact value rounded to the stated decimals must equal the stated value); "
            f"nothing was written:\n{lines}"
        )
        self.disagreements = list(disagreements)


def exact_text(quantity: Quantity) -> str:
    text = plain(quantity.value)
    if len(text.replace(".", "").lstrip("0")) > 12:
        text = f"{display(quantity.value, 8)}..."
    return f"{text} {unit(quantity.unit).display}"


def check_stated(
    row: TableRow, dose: Decimal, cumulative: Decimal, dose_unit: str, derived: bool
) -> list[Disagreement]:
    found = []
    checks = [("cumulative", row.cumulative, cumulative)]
    if derived:
        checks.insert(0, ("dose", row.dose, dose))
    for column, stated, exact in checks:
        if stated is None:
            continue
        if decimals_shown(stated.value) is None or not agrees(stated.value, exact):
            found.append(Disagreement(row.row, row.step, column, stated, Quantity(exact, dose_unit)))
    return found


def preparation_disagreements(
    solutions: Mapping[str, TableSolution], rows: Sequence[TableRow], options: AuthorOptions
) -> list[Disagreement]:
    found = []
    for label, prep in options.preparations.items():
        stated = next(r for r in rows if r.solution == label)
        assert stated.concentration is not None
        made = prep.concentration()
        if not agrees(stated.concentration.value, made.value):
            found.append(Disagreement(stated.row, stated.step, "concentration", stated.concentration, made))
    return found
