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
from dataclasses import dataclass, field
from decimal import Decimal

from fhir_desens.authoring.table import TableError, TableRow
from fhir_desens.errors import DesensError, ProtocolDefinitionError, ValidationFailed
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import check_protocol
from fhir_desens.protocol.model import (
    ClosingMethod,
    Evidence,
    Preparation,
    Protocol,
    ProtocolDefaults,
    ProtocolKind,
    SolutionDefinition,
    Source,
    StepDefinition,
    TargetKind,
)
from fhir_desens.protocol.quantity import (
    CANONICAL_DOSE,
    EXACT,
    Dimension,
    Quantity,
    add,
    concentration_base,
    display,
    div,
    mul,
    plain,
    sub,
    unit,
)
from fhir_desens.protocol.stated import agrees, decimals_shown

__all__ = ["AuthorOptions", "Authored", "Disagreement", "StatedValuesDisagree", "author_protocol"]

SIXTY = Decimal(60)
ROUTES = {"oral": "oral", "iv": "IV"}
SCALINGS = ("fixed", "proportional")
#: Relative tolerance when the authored protocol is re-planned at the table's total (the 50-digit
#: context loses far less; the same tolerance as INV-08).
REPRODUCTION_TOLERANCE = Decimal("1e-30")


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
    version: str = "1.0.0"
    table_name: str = "table"


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
        return f"{where}, column {self.column}: stated {self.stated}, computed {_exact_text(self.computed)}"


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


@dataclass(frozen=True)
class Authored:
    protocol: Protocol
    total: Quantity  # the table's exact total
    step_doses: tuple[Quantity, ...]  # each row's exact dose


def _exact_text(quantity: Quantity) -> str:
    text = plain(quantity.value)
    if len(text.replace(".", "").lstrip("0")) > 12:
        text = f"{display(quantity.value, 8)}..."
    return f"{text} {unit(quantity.unit).display}"


# --- solutions ------------------------------------------------------------------------------------


@dataclass
class _Solution:
    label: str
    number: int
    concentration: Quantity | None  # None: dose-alone rows (each prepared as one unit dose)
    first_row: int
    used_ml: Decimal = Decimal(0)


def _solutions(rows: Sequence[TableRow], source: str) -> dict[str, _Solution]:
    found: dict[str, _Solution] = {}
    for row in rows:
        known = found.get(row.solution)
        if known is None:
            found[row.solution] = _Solution(row.solution, len(found) + 1, row.concentration, row.row)
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


def _dose_dimension(rows: Sequence[TableRow], source: str) -> Dimension:
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


# --- exact doses and the stated-value check --------------------------------------------------------


def _check_stated(
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
    row: TableRow, is_last: bool, solution: _Solution, bag_volumes: Mapping[str, Decimal], source: str
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


# --- the protocol ---------------------------------------------------------------------------------


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
    _check_options(kind, scaling, options, rows)
    dimension = _dose_dimension(rows, source)
    dose_unit = CANONICAL_DOSE[dimension].code
    solutions = _solutions(rows, source)
    _apply_preparations(solutions, options, rows)
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
                dose = mul(conc, row.volume_ml)  # the preparation's exact concentration, if stated
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
        disagreements += _check_stated(row, dose, cumulative, dose_unit, derived)
        doses.append(dose)
        volumes.append(volume)
    disagreements += _preparation_disagreements(solutions, rows, options)
    if disagreements:
        raise StatedValuesDisagree(source, sorted(disagreements, key=lambda d: d.row))
    _check_bag_volumes(solutions, options, source)
    total = Quantity(cumulative, dose_unit)
    protocol = _protocol(kind, scaling, rows, solutions, options, dimension, total)
    _check_reproduces(protocol, total, doses, options)
    return Authored(protocol, total, tuple(Quantity(d, dose_unit) for d in doses))


def _check_options(
    kind: ProtocolKind, scaling: str, options: AuthorOptions, rows: Sequence[TableRow]
) -> None:
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


def _apply_preparations(
    solutions: dict[str, _Solution], options: AuthorOptions, rows: Sequence[TableRow]
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


def _preparation_disagreements(
    solutions: Mapping[str, _Solution], rows: Sequence[TableRow], options: AuthorOptions
) -> list[Disagreement]:
    found = []
    for label, prep in options.preparations.items():
        stated = next(r for r in rows if r.solution == label)
        assert stated.concentration is not None
        made = prep.concentration()
        if not agrees(stated.concentration.value, made.value):
            found.append(Disagreement(stated.row, stated.step, "concentration", stated.concentration, made))
        solutions[label].concentration = made
    return found


def _check_bag_volumes(solutions: Mapping[str, _Solution], options: AuthorOptions, source: str) -> None:
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


def _protocol(
    kind: ProtocolKind,
    scaling: str,
    rows: Sequence[TableRow],
    solutions: Mapping[str, _Solution],
    options: AuthorOptions,
    dimension: Dimension,
    total: Quantity,
) -> Protocol:
    if kind is ProtocolKind.DISCRETE:
        definitions, steps = _discrete_parts(rows, solutions, options)
        closing: tuple[ClosingMethod, ...] = ()
        defaults = ProtocolDefaults(step_minutes=options.interval_minutes or Decimal(15))
    else:
        definitions, steps, closing_method = _infusion_parts(rows, solutions, options, total, scaling)
        closing = (closing_method,)
        defaults = ProtocolDefaults(closing=closing_method, step_minutes=rows[0].minutes or Decimal(15))
    citation = options.source or f"Institutional table {options.table_name}"
    how = "fixed doses" if scaling == "fixed" else "scaled in proportion to the target"
    description = (
        f"{options.title}: {len(rows)} steps authored with fhir-desens from {citation}, every value "
        f"recomputed exactly ({how}). The table's doses sum to {total} "
        f"(cumulative {plain(total.value)} {unit(total.unit).display})."
    )
    protocol = Protocol(
        id=options.id,
        version=options.version,
        title=options.title,
        kind=kind,
        route=ROUTES[options.route],
        description=description,
        evidence=Evidence.PUBLISHED_TABLE,
        sources=(Source(citation),),
        dose_dimensions=(dimension,),
        target_kind=TargetKind.CUMULATIVE,
        solutions=tuple(definitions),
        steps=tuple(steps),
        defaults=defaults,
        closing_methods=closing,
        fixed_table=kind is ProtocolKind.INFUSION and scaling == "fixed",
        drugs=(options.drug,),
    )
    try:
        check_protocol(protocol)
    except ProtocolDefinitionError as error:
        raise TableError(
            options.table_name, None, None, f"the table does not make a protocol: {error}"
        ) from None
    return protocol


def _discrete_parts(
    rows: Sequence[TableRow], solutions: Mapping[str, _Solution], options: AuthorOptions
) -> tuple[list[SolutionDefinition], list[StepDefinition]]:
    definitions: list[SolutionDefinition] = []
    steps: list[StepDefinition] = []
    numbers: dict[str, int] = {}
    interval = options.interval_minutes
    for row in rows:
        solution = solutions[row.solution]
        if solution.concentration is None:  # a dose prepared on its own: one unit of that dose
            assert row.dose is not None
            definitions.append(
                SolutionDefinition(
                    len(definitions) + 1,
                    f"Solution {row.solution}: step {row.step} dose",
                    solid=True,
                    unit_dose=row.dose,
                )
            )
            steps.append(StepDefinition(row.step, len(definitions), interval, units=Decimal(1)))
            continue
        if row.solution not in numbers:
            prep = options.preparations.get(row.solution)
            volume = prep.final_volume_ml if prep is not None else options.bag_volumes_ml.get(row.solution)
            definitions.append(
                SolutionDefinition(
                    len(definitions) + 1,
                    f"Solution {row.solution}",
                    concentration=solution.concentration,
                    volume_ml=volume,
                    preparation=prep,
                )
            )
            numbers[row.solution] = len(definitions)
        steps.append(StepDefinition(row.step, numbers[row.solution], interval, volume_ml=row.volume_ml))
    return definitions, steps


def _infusion_parts(
    rows: Sequence[TableRow],
    solutions: Mapping[str, _Solution],
    options: AuthorOptions,
    total: Quantity,
    scaling: str,
) -> tuple[list[SolutionDefinition], list[StepDefinition], ClosingMethod]:
    ordered = sorted(solutions.values(), key=lambda s: s.number)
    missing = [s.label for s in ordered if s.label not in options.bag_volumes_ml]
    if missing:
        raise TableError(
            "--bag-volumes",
            None,
            None,
            f"an infusion table needs the volume of every bag; missing: {', '.join(missing)}",
            "LABEL=ML for each solution, e.g. " + ",".join(f"{s.label}=100" for s in ordered),
        )
    numbers = {s.label: s.number for s in ordered}
    steps = [StepDefinition(r.step, numbers[r.solution], r.minutes, rate_ml_h=r.rate_ml_h) for r in rows]
    if scaling == "fixed":  # the table's concentrations; the last step closes on the table's total
        fixed = [
            SolutionDefinition(
                s.number,
                f"Solution {s.label}",
                concentration=s.concentration,
                volume_ml=options.bag_volumes_ml[s.label],
                preparation=options.preparations.get(s.label),
            )
            for s in ordered
        ]
        return fixed, steps, ClosingMethod.REMAINDER_STEP
    last_volume = options.bag_volumes_ml[ordered[-1].label]
    definitions = []
    for solution in ordered:
        assert solution.concentration is not None
        # The engine makes bag i = (target / last bag volume) x dilution; at the table's total that
        # is exactly the table's concentration.
        dilution = div(mul(solution.concentration.value, last_volume), total.value)
        if not 0 < dilution <= 1:
            raise TableError(
                "--bag-volumes",
                None,
                None,
                f"bag {solution.label} at {solution.concentration} would hold more than the table's total "
                f"{total} in {plain(last_volume)} mL; proportional scaling needs each bag to be a dilution "
                "of the last",
                "the volumes the table's bags were prepared in",
            )
        definitions.append(
            SolutionDefinition(
                solution.number,
                f"Solution {solution.label}",
                dilution=dilution,
                volume_ml=options.bag_volumes_ml[solution.label],
            )
        )
    closing = (
        ClosingMethod.REDUCED_FINAL_BAG if rows[-1].minutes is None else ClosingMethod.TRUNCATED_FINAL_STEP
    )
    return definitions, steps, closing


def _check_reproduces(
    protocol: Protocol, total: Quantity, doses: Sequence[Decimal], options: AuthorOptions
) -> None:
    """Planned at the table's own total, the protocol gives the table's doses (else it is refused)."""
    try:
        plan = compute_plan(PlanRequest(protocol, options.drug, total))
    except DesensError as error:
        raise TableError(
            options.table_name, None, None, f"the protocol cannot be planned at its total: {error}"
        ) from None
    planned = [step.dose.value for step in plan.steps]
    for number, (mine, table) in enumerate(zip(planned, doses, strict=False), start=1):
        scale = max(abs(table), Decimal(1))
        if abs(EXACT.subtract(mine, table)) > EXACT.multiply(scale, REPRODUCTION_TOLERANCE):
            raise TableError(
                options.table_name,
                None,
                None,
                f"planned at its total {total}, step {number} would be {plain(mine)}, the table {plain(table)}",
            )
    if len(planned) != len(doses):
        raise TableError(options.table_name, None, None, "planned at its total, the protocol stops early")
