"""From a table's rows to a protocol: every dose recomputed exactly, every stated value re-verified.

* Discrete tables (rows without a rate): each row is a dose given at once, either ``dose`` alone
  (prepared as one unit dose) or ``concentration`` x ``volume_ml`` drawn from a solution shared by
  the rows with the same label (a bag the syringe doses are drawn from, INV-21). ``--interval`` is
  the time between doses. Scaling ``fixed`` only: the table's doses are the doses (INV-24).
* Infusion tables (rows with ``rate_ml_h``): concentration x rate x minutes; the last row's minutes
  may be empty (until its bag is empty). Scaling ``proportional`` only: the bags become dilutions of
  the final bag's nominal concentration, so the pattern scales with the target like the built-in
  IV protocols; at the table's own total the plan reproduces the table.

Stated ``dose`` (when derived) and ``cumulative`` values are checked with the one stated-value rule
(:func:`fhir_desens.protocol.stated.agrees`); every disagreement is collected before anything is
refused, so the person fixing the table sees all of them at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from fhir_desens.authoring.assemble import assemble_protocol, check_reproduces
from fhir_desens.authoring.disagreements import (
    Disagreement,
    StatedValuesDisagree,
    check_stated,
    preparation_disagreements,
)
from fhir_desens.authoring.options import (
    AuthorOptions,
    TableSolution,
    apply_preparations,
    check_bag_volumes,
    check_options,
    dose_dimension,
    table_solutions,
)
from fhir_desens.authoring.table import TableError, TableRow
from fhir_desens.protocol.model import Protocol, ProtocolKind
from fhir_desens.protocol.quantity import CANONICAL_DOSE, Quantity, add, div, mul, sub

__all__ = ["AuthorOptions", "Authored", "Disagreement", "StatedValuesDisagree", "author_protocol"]

SIXTY = Decimal(60)


@dataclass(frozen=True)
class Authored:
    protocol: Protocol
    total: Quantity  # the table's exact total
    step_doses: tuple[Quantity, ...]  # each row's exact dose


def author_protocol(rows: Sequence[TableRow], options: AuthorOptions) -> Authored:
    """The protocol a table describes; TableError (2), StatedValuesDisagree (1) otherwise."""
    source = options.table_name
    infusion = [row.is_infusion for row in rows]
    if any(infusion) and not all(infusion):
        odd = next(r for r in rows if r.is_infusion != infusion[0])
        raise TableError(
            source,
            odd.row,
            "rate_ml_h",
            "the table mixes infusion rows (with a rate) and discrete doses",
            "every row with rate_ml_h, or none",
        )
    kind = ProtocolKind.INFUSION if infusion[0] else ProtocolKind.DISCRETE
    scaling = options.scaling or ("proportional" if kind is ProtocolKind.INFUSION else "fixed")
    check_options(kind, scaling, options, rows)
    dimension = dose_dimension(rows, source)
    dose_unit = CANONICAL_DOSE[dimension].code
    solutions = table_solutions(rows, source)
    apply_preparations(solutions, options, rows)
    doses: list[Decimal] = []
    volumes: list[Decimal | None] = []
    disagreements: list[Disagreement] = []
    cumulative = Decimal(0)
    for index, row in enumerate(rows):
        solution = solutions[row.solution]
        conc = None if solution.concentration is None else solution.concentration.value
        if kind is ProtocolKind.DISCRETE:
            dose, derived = _discrete_dose(row, source)
            if conc is not None and row.volume_ml is not None:
                dose = mul(conc, row.volume_ml)  # the recipe's exact concentration when one is given
            volume = row.volume_ml
        else:
            volume = _infusion_volume(row, index == len(rows) - 1, solution, options.bag_volumes_ml, source)
            assert conc is not None
            dose, derived = mul(conc, volume), True
            if row.dose is not None and row.dose.dimension is not dimension:
                raise TableError(source, row.row, "dose", f"{row.dose} does not fit the table's units")
        if volume is not None:
            solution.used_ml = add(solution.used_ml, volume)
        cumulative = add(cumulative, dose)
        disagreements += check_stated(row, dose, cumulative, dose_unit, derived)
        doses.append(dose)
        volumes.append(volume)
    disagreements += preparation_disagreements(solutions, rows, options)
    if disagreements:
        raise StatedValuesDisagree(source, sorted(disagreements, key=lambda d: d.row))
    check_bag_volumes(solutions, options, source)
    total = Quantity(cumulative, dose_unit)
    protocol = assemble_protocol(kind, scaling, rows, solutions, options, dimension, total)
    check_reproduces(protocol, total, doses, options)
    return Authored(protocol, total, tuple(Quantity(d, dose_unit) for d in doses))


def _discrete_dose(row: TableRow, source: str) -> tuple[Decimal, bool]:
    """(exact dose, derived?) of a discrete row."""
    if row.minutes is not None:
        raise TableError(
            source,
            row.row,
            "minutes",
            "discrete doses are given at once; minutes are for infusion rows",
            "--interval for the time between doses",
        )
    if row.concentration is not None or row.volume_ml is not None:
        if row.concentration is None or row.volume_ml is None:
            missing = "volume_ml" if row.volume_ml is None else "concentration"
            raise TableError(
                source, row.row, missing, f"{missing} is empty", "dose alone, or concentration and volume_ml"
            )
        return mul(row.concentration.value, row.volume_ml), True
    if row.dose is None:
        raise TableError(
            source, row.row, "dose", "the row gives no dose", "dose alone, or concentration and volume_ml"
        )
    if row.dose.value <= 0:
        raise TableError(source, row.row, "dose", f"{row.dose} is not above 0", "a dose above 0")
    return row.dose.value, False


def _infusion_volume(
    row: TableRow, is_last: bool, solution: TableSolution, bag_volumes: Mapping[str, Decimal], source: str
) -> Decimal:
    if row.concentration is None:
        raise TableError(
            source, row.row, "concentration", "an infusion row needs the solution's concentration"
        )
    assert row.rate_ml_h is not None
    if row.volume_ml is not None:
        raise TableError(
            source, row.row, "volume_ml", "infusion rows give rate_ml_h and minutes, not volume_ml"
        )
    if row.minutes is not None:
        return div(mul(row.rate_ml_h, row.minutes), SIXTY)
    if not is_last:
        raise TableError(
            source, row.row, "minutes", "only the last step may leave minutes empty", "minutes above 0"
        )
    if solution.label not in bag_volumes:
        raise TableError(
            source,
            row.row,
            "minutes",
            f"the last step runs until bag {solution.label} is empty, so its volume is needed",
            f"--bag-volumes {solution.label}=ML",
        )
    left = sub(bag_volumes[solution.label], solution.used_ml)
    if left <= 0:
        raise TableError(
            source,
            row.row,
            "minutes",
            f"the earlier steps already use all of bag {solution.label}",
            "a larger --bag-volumes value",
        )
    return left
