"""The engine against its floor: 12-step plans per second, and the same numbers computed with bare
Decimal operations (no dataclasses, no checks), from one run so the ratio survives a noisy machine.

    .venv/bin/python benchmarks/bench_engine.py [--seconds 2]

The floor (:func:`floor_plan`) is the 12-step 3-bag protocol (reduced final bag, final rate 75 mL/h,
250 mL bags, exact rates) written out with the engine's Decimal context and nothing else; every number
of each step is checked equal to the engine's before anything is timed. The engine runs
``compute_plan`` with every invariant checked. Both are timed alternately, in slices, with a different
dose each time, the settings (final rate, bags) a clinic's defaults; then again with a new final rate
every plan, so the engine never reuses settings it resolved before. Prints figures, asserts nothing
about time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from decimal import Decimal

from fhir_desens.protocol.calculate import PlanRequest, compute_plan
from fhir_desens.protocol.library import get_protocol
from fhir_desens.protocol.quantity import EXACT, Quantity

FINAL_RATE = Decimal(75)
BAG_ML = Decimal(250)
SIXTY = Decimal(60)
PROTOCOL = get_protocol("iv-12-step-3-bag")
#: (solution dilution, rate fraction of the final rate, minutes or None for the closing step)
STEPS = tuple(
    (PROTOCOL.solution(s.solution).dilution or Decimal(1), s.rate_fraction, s.minutes, s.solution)
    for s in PROTOCOL.steps
)
Row = tuple[Decimal, Decimal, Decimal, Decimal, Decimal]  # rate, minutes, volume, dose, cumulative


def floor_plan(target: Decimal, final_rate: Decimal = FINAL_RATE) -> list[Row]:
    """The 12 steps with bare Decimal operations: bags 1 and 2 at their dilution of the target's
    concentration, bag 3 at what is left over its volume, the last step emptying it at the final rate."""
    mul, div, add, sub = EXACT.multiply, EXACT.divide, EXACT.add, EXACT.subtract
    nominal = div(target, BAG_ML)
    rows: list[Row] = []
    used = [Decimal(0)] * 4
    cumulative = Decimal(0)
    concentration: dict[int, Decimal] = {}
    for dilution, fraction, minutes, solution in STEPS:
        if solution not in concentration:
            last_bag = solution == 3
            concentration[solution] = (
                div(sub(target, cumulative), BAG_ML) if last_bag else mul(nominal, dilution)
            )
        conc = concentration[solution]
        rate = mul(fraction, final_rate)
        if minutes is None:  # the closing step empties the last bag
            volume = sub(BAG_ML, used[solution])
            dose = sub(target, cumulative)
            minutes = div(mul(volume, SIXTY), rate)
        else:
            volume = div(mul(rate, minutes), SIXTY)
            dose = mul(volume, conc)
        cumulative = add(cumulative, dose)
        used[solution] = add(used[solution], volume)
        rows.append((rate, minutes, volume, dose, cumulative))
    return rows


def engine_plan(target: Decimal, final_rate: Decimal = FINAL_RATE) -> list[Row]:
    plan = compute_plan(
        PlanRequest(
            PROTOCOL, "carboplatin", Quantity(target, "mg"), final_rate_ml_h=final_rate, bag_volume_ml=BAG_ML
        )
    )
    return [(s.rate_ml_h, s.minutes, s.volume_ml, s.dose.value, s.cumulative_dose.value) for s in plan.steps]


def check_equal(doses: list[Decimal]) -> None:
    for dose in doses:
        for rate in (FINAL_RATE, RATES[0], RATES[-1]):
            if floor_plan(dose, rate) != engine_plan(dose, rate):
                raise SystemExit(
                    f"the floor and the engine differ at {dose} mg, {rate} mL/h: the floor is wrong"
                )


#: Final rates of the "new settings every plan" run: 1,000 of them, more than the engine keeps resolved
#: settings for (``bags.infusion_settings``), so none is ever reused there.
RATES = tuple(Decimal(500 + i).scaleb(-1) for i in range(1000))  # 50.0 to 149.9 mL/h


def with_new_settings(plan: Callable[[Decimal, Decimal], object]) -> Callable[[Decimal], object]:
    rates = iter(range(10**9))
    return lambda dose: plan(dose, RATES[next(rates) % len(RATES)])


def alternately(actions: dict[str, Callable[[Decimal], object]], seconds: float) -> dict[str, float]:
    """Plans per second of each action, timed in alternating slices of about 0.1 s."""
    counts = dict.fromkeys(actions, 0)
    spent = dict.fromkeys(actions, 0.0)
    dose = iter(range(10**9))
    while min(spent.values()) < seconds:
        for name, action in actions.items():
            start = time.perf_counter()
            while time.perf_counter() - start < 0.1:
                action(Decimal(100 + next(dose) % 900))
                counts[name] += 1
            spent[name] += time.perf_counter() - start
    return {name: counts[name] / spent[name] for name in actions}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per contender (default 2)")
    args = parser.parse_args(argv)
    check_equal([Decimal(d) for d in ("1", "37.5", "400", "999", "1234.567")])
    rates = alternately(
        {
            "engine": engine_plan,
            "floor": floor_plan,
            "engine, new settings": with_new_settings(engine_plan),
            "floor, new settings": with_new_settings(floor_plan),
        },
        args.seconds,
    )
    print(
        f"12-step plan, one core, a new dose every plan: engine (compute + every invariant) "
        f"{rates['engine']:,.0f} plans/s; bare-Decimal floor {rates['floor']:,.0f} plans/s (same numbers, "
        f"checked equal); engine/floor = {rates['floor'] / rates['engine']:.1f}x the floor's time"
    )
    print(
        f"  and a new final rate every plan too (no resolved settings reused): engine "
        f"{rates['engine, new settings']:,.0f} plans/s; floor {rates['floor, new settings']:,.0f} plans/s; "
        f"engine/floor = {rates['floor, new settings'] / rates['engine, new settings']:.1f}x"
    )


if __name__ == "__main__":
    main()
