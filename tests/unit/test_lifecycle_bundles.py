"""Status changes as FHIR writes (fhir_desens.fhir.lifecycle, no network) and the dose tolerance
(fhir_desens.course.therapeutic)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_desens.course.draft import PlanDraft
from fhir_desens.course.therapeutic import dose_blocker, dose_difference
from fhir_desens.fhir import lifecycle as fl

GROUP = {
    "resourceType": "RequestGroup",
    "id": "rg1",
    "status": "active",
    "note": [{"text": "IV 12-step"}],
    "subject": {"reference": "Patient/p1"},
}
STATUSES = ["active", "completed", "cancelled", "stopped", "on-hold", "entered-in-error"]


def order(n: int, status: str = "active") -> dict[str, object]:
    return {"resourceType": "MedicationRequest", "id": f"mr{n}", "status": status}


@pytest.mark.requirement("ORDER-DC-1")
@given(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=16), st.data())
def test_discontinue_revokes_and_ends_only_open_orders_each_guarded_by_its_version(
    statuses: list[str], data: st.DataObject
) -> None:
    orders = [(order(n, s), str(n + 2)) for n, s in enumerate(statuses)]
    started = frozenset(data.draw(st.sets(st.sampled_from([f"mr{n}" for n in range(len(statuses))]))))
    bundle = fl.discontinue_bundle(
        GROUP,
        "3",
        orders,
        started,
        reason="why",
        when="2027-01-15T09:00:00+01:00",
        practitioner=None,
        session="s",
    )
    entries = bundle["entry"]
    assert bundle["type"] == "transaction"
    assert entries[0]["resource"]["status"] == "revoked" and entries[0]["request"]["ifMatch"] == 'W/"3"'
    changed = {
        e["resource"]["id"]: e for e in entries if e["resource"]["resourceType"] == "MedicationRequest"
    }
    for (resource, version), status in zip(orders, statuses, strict=True):
        if status in fl.FINAL_ORDER_STATUSES:
            assert resource["id"] not in changed  # a completed or ended order is never rewritten
            continue
        entry = changed[resource["id"]]
        assert entry["request"] == {
            "method": "PUT",
            "url": f"MedicationRequest/{resource['id']}",
            "ifMatch": f'W/"{version}"',
        }
        assert entry["resource"]["status"] == ("stopped" if resource["id"] in started else "cancelled")
        assert entry["resource"]["statusReason"]["text"] == "Discontinued: why"
    provenance = entries[-1]["resource"]
    assert provenance["resourceType"] == "Provenance"
    assert [t["reference"] for t in provenance["target"]] == [
        "RequestGroup/rg1",
        *(f"MedicationRequest/{i}" for i in changed),
    ]
    assert GROUP["status"] == "active" and all(
        o["status"] == s for (o, _), s in zip(orders, statuses, strict=True)
    )


def test_the_same_discontinuation_writes_the_same_provenance_id() -> None:
    def bundle() -> dict[str, object]:
        return fl.discontinue_bundle(
            GROUP,
            "1",
            [],
            frozenset(),
            reason="r",
            when="2027-01-15T09:00:00Z",
            practitioner=None,
            session="s1",
        )

    assert bundle()["entry"][-1]["request"] == bundle()["entry"][-1]["request"]  # type: ignore[index]


@pytest.mark.requirement("ORDER-HOLD-1")
def test_hold_names_the_plan_and_release_undoes_it() -> None:
    therapeutic = {"resourceType": "MedicationRequest", "id": "t1", "status": "active"}
    held = fl.on_hold_for_plan(therapeutic, "rg-9", "carboplatin 400 mg, 12 steps")
    assert held["status"] == "on-hold" and fl.held_for(held) == "rg-9"
    assert therapeutic["status"] == "active"  # the read resource is not changed in place
    assert fl.released(held) == therapeutic
    assert fl.held_for({**held, "status": "active"}) is None
    assert fl.held_for({**therapeutic, "status": "on-hold", "statusReason": {"text": "pharmacy"}}) is None


def draft(
    target: str, ordered: str | None, per_m2: str | None = None, reason: str | None = None
) -> PlanDraft:
    return PlanDraft(
        draft_id="d" * 22,
        patient="Patient/p1",
        drug="carboplatin",
        drug_rxnorm=(),
        indication=None,
        target=target,
        dose_basis=None,
        protocol_id="iv-12-step-3-bag",
        final_rate_ml_h=None,
        bag_volume_ml=None,
        diluent=None,
        closing=None,
        insert_before=(),
        risk={},
        unlisted_confirmed=False,
        override_reason=None,
        copied_from=None,
        created_at=0.0,
        order_reference="MedicationRequest/t1" if ordered else None,
        ordered_dose=ordered,
        dose_per_m2=per_m2,
        dose_reason=reason,
    )


@pytest.mark.requirement("ORDER-DOSE-1")
@pytest.mark.parametrize(
    ("target", "ordered", "blocked"),
    [
        ("400 mg", "400 mg", False),
        ("420 mg", "400 mg", False),  # exactly 5 %
        ("421 mg", "400 mg", True),
        ("4000 mg", "400 mg", True),  # ten-fold
        ("0.4 g", "400 mg", False),  # same dose, other unit
        ("40 mg", "400 mg", True),
    ],
)
def test_a_dose_beyond_the_tolerance_blocks_until_acknowledged(
    target: str, ordered: str, blocked: bool
) -> None:
    assert (dose_blocker(draft(target, ordered), Decimal(5)) is not None) is blocked
    assert (
        dose_blocker(draft(target, ordered, reason="checked with the oncologist today"), Decimal(5)) is None
    )


def test_a_per_m2_order_is_compared_per_m2_and_no_order_means_no_check() -> None:
    difference = dose_difference(draft("700 mg", "375 mg/m2", per_m2="375 mg/m2"))
    assert difference is not None and difference.percent == 0
    assert dose_difference(draft("700 mg", None)) is None
