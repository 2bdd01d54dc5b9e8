"""The protocol a checked table makes: solutions and steps for the engine, and the proof that,
planned at the table's own total, it gives the table's doses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from fhir_desens.authoring.options import ROUTES, AuthorOptions, TableSolution
from fhir_desens.authoring.table import TableError, TableRow
from fhir_desens.errors import DesensError, ProtocolDefinitionError
from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import check_protocol
from fhir_desens.protocol.model import (
    ClosingMethod,
    Evidence,
    Protocol,
    ProtocolDefaults,
    ProtocolKind,
    SolutionDefinition,
    Source,
    StepDefinition,
    TargetKind,
)
from fhir_desens.protocol.quantity import EXACT, Dimension, Quantity, div, mul, plain, unit

__all__ = ["assemble_protocol", "check_reproduces"]

#: Relative tolerance when the authored protocol is re-planned at the table's total (the 50-digit
#: context loses far less; the same tolerance as INV-08).
REPRODUCTION_TOLERANCE = Decimal("1e-30")


def assemble_protocol(
    kind: ProtocolKind,
    scaling: str,
    rows: Sequence[TableRow],
    solutions: Mapping[str, TableSolution],
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
        evidence=Evidence.INSTITUTIONAL_TABLE,
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
    rows: Sequence[TableRow], solutions: Mapping[str, TableSolution], options: AuthorOptions
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
                    unit_name="prepared dose",  # measured out by the pharmacy, not a tablet
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
                    diluent=options.diluent,
                    preparation=prep,
                )
            )
            numbers[row.solution] = len(definitions)
        steps.append(StepDefinition(row.step, numbers[row.solution], interval, volume_ml=row.volume_ml))
    return definitions, steps


def _infusion_parts(
    rows: Sequence[TableRow],
    solutions: Mapping[str, TableSolution],
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
                diluent=options.diluent,
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
                diluent=options.diluent,
            )
        )
    closing = (
        ClosingMethod.REDUCED_FINAL_BAG if rows[-1].minutes is None else ClosingMethod.TRUNCATED_FINAL_STEP
    )
    return definitions, steps, closing


def check_reproduces(
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
