"""Syringe-measurable volumes for discrete doses (pure, exact).

A discrete dose (an oral solution, an IV push or a dose drawn from a shared bag) is measured with a
syringe, and a syringe can only be read to its marks: 0.333 mL cannot be drawn, 0.33 mL can. With
``PlanRequest.syringe_volumes`` every liquid discrete dose's volume is rounded half-up to the graduation
of the smallest syringe in :data:`SYRINGES` that holds it (never below one mark), and the dose is then
computed exactly from the volume that will be measured (INV-25). The table is stated here so that a
pharmacist can check it against the syringes the ward stocks.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from fhir_desens.protocol.quantity import EXACT
from fhir_desens.protocol.record import record

__all__ = [
    "SYRINGES",
    "SYRINGE_TABLE_SOURCE",
    "Fill",
    "Syringe",
    "measurable_volume",
    "on_marks",
    "syringe_fills",
    "syringe_for",
]


@record
class Syringe:
    capacity_ml: Decimal
    graduation_ml: Decimal  # the finest mark

    @property
    def text(self) -> str:
        from fhir_desens.protocol import display as shown

        return f"{shown.grouped(self.capacity_ml)} mL syringe, {shown.grouped(self.graduation_ml)} mL marks"


#: Common Luer and oral syringes by capacity and finest graduation (BD Luer-Lok hypodermic syringes:
#: 1 mL in 0.01 mL, 3 mL in 0.1 mL, 5 and 10 mL in 0.2 mL, 20 to 60 mL in 1 mL). Each graduation is a
#: whole multiple of every smaller syringe's graduation and each capacity a whole multiple of the next
#: syringe's graduation, so rounding never makes a larger volume smaller than a smaller one.
SYRINGES: tuple[Syringe, ...] = (
    Syringe(Decimal(1), Decimal("0.01")),
    Syringe(Decimal(3), Decimal("0.1")),
    Syringe(Decimal(5), Decimal("0.2")),
    Syringe(Decimal(10), Decimal("0.2")),
    Syringe(Decimal(20), Decimal(1)),
    Syringe(Decimal(30), Decimal(1)),
    Syringe(Decimal(60), Decimal(1)),
)
SYRINGE_TABLE_SOURCE = "BD Luer-Lok syringe graduations (1 mL: 0.01; 3 mL: 0.1; 5-10 mL: 0.2; 20-60 mL: 1 mL)"


def syringe_for(volume_ml: Decimal) -> Syringe:
    """The smallest syringe that holds ``volume_ml`` (the largest for more: measured in several fills)."""
    return next((s for s in SYRINGES if volume_ml <= s.capacity_ml), SYRINGES[-1])


def measurable_volume(volume_ml: Decimal) -> tuple[Decimal, Syringe]:
    """``volume_ml`` rounded half-up to the marks of the syringe that will measure it (at least one mark)."""
    syringe = syringe_for(volume_ml)
    marks = EXACT.divide(volume_ml, syringe.graduation_ml).to_integral_value(rounding=ROUND_HALF_UP)
    measured = EXACT.multiply(max(marks, Decimal(1)), syringe.graduation_ml).normalize(EXACT)
    return measured, syringe


@record
class Fill:
    """One syringe fill: ``volume_ml`` read on ``syringe``'s marks."""

    volume_ml: Decimal
    syringe: Syringe


def on_marks(volume_ml: Decimal, syringe: Syringe) -> bool:
    """Whether ``syringe`` measures ``volume_ml`` exactly: above zero, within it, on one of its marks."""
    return Decimal(0) < volume_ml <= syringe.capacity_ml and volume_ml % syringe.graduation_ml == 0


#: how many coarse marks below the volume are tried for the fill that takes the rest on finer marks
_BULK_TRIES = 12


def syringe_fills(volume_ml: Decimal, minimum_ml: Decimal) -> tuple[Fill, ...] | None:
    """``volume_ml`` measured exactly, each fill at least ``minimum_ml`` and on its syringe's marks: whole
    fills of the largest syringe, then the rest in the syringe that holds it, or split into a coarse fill
    and a fine one (6.12 mL: 6 mL in a 10 mL syringe + 0.12 mL in a 1 mL syringe). None when no such
    split is exact (0.0437 mL has finer digits than any mark)."""
    if volume_ml < minimum_ml:
        return None
    largest = SYRINGES[-1]
    whole = int(volume_ml // largest.capacity_ml)
    rest = volume_ml - whole * largest.capacity_ml
    if 0 < rest < minimum_ml and whole:  # the rest alone would be below the minimum: fold one fill in
        whole, rest = whole - 1, rest + largest.capacity_ml
    full = (Fill(largest.capacity_ml, largest),) * whole
    if rest == 0:
        return full
    found = _rest_fills(rest, minimum_ml)
    return None if found is None else full + found


def _rest_fills(volume_ml: Decimal, minimum_ml: Decimal, depth: int = 3) -> tuple[Fill, ...] | None:
    """``volume_ml`` in the syringe that holds it, or a coarse fill on its marks and the rest measured
    the same way in finer syringes (at most ``depth`` fills: 15.01 mL = 14 + 0.9 + 0.11 mL)."""
    syringe = syringe_for(volume_ml)
    if on_marks(volume_ml, syringe):
        return (Fill(volume_ml.normalize(), syringe),)
    if depth == 1:
        return None
    coarse = (volume_ml // syringe.graduation_ml) * syringe.graduation_ml
    for _ in range(_BULK_TRIES):
        fine = volume_ml - coarse
        if coarse <= 0:
            return None
        if fine >= minimum_ml and syringe_for(fine).graduation_ml < syringe.graduation_ml:
            rest = _rest_fills(fine, minimum_ml, depth - 1)
            if rest is not None:
                return (Fill(coarse.normalize(), syringe_for(coarse)), *rest)
        coarse -= syringe.graduation_ml
    return None
