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

__all__ = ["SYRINGES", "SYRINGE_TABLE_SOURCE", "Syringe", "measurable_volume", "syringe_for"]


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
