"""Drug monographs: what fhir-desens knows about a drug, as data with its sources (pure).

One JSON file per drug in ``data/monographs/`` holds its products (route, dosage form, RxNorm codes
with how each was verified, the stock concentration the pharmacy draws from or the strength of a
tablet), the diluents it may and may not be mixed with, the concentration range its label or a
stability study covers, a maximum dose rate where the label gives one, container and filter
requirements, the components of a combination (sulfamethoxazole / trimethoprim) and a plausible
dose range. Every fact names a source with its date; sources that were not re-read are marked so.

This module only reads and checks the packaged files; the checks that use them are in
``fhir_desens.drugs.checks``. An RxNorm code marked unverified is kept for a later check and is
never emitted (:attr:`Product.codes` and :attr:`Monograph.codes` leave it out).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

from fhir_desens.errors import DesensError, ProtocolDefinitionError
from fhir_desens.protocol.quantity import Dimension, Quantity, parse_quantity

__all__ = [
    "RXNORM",
    "BeyondUse",
    "Combination",
    "Component",
    "Diluent",
    "DoseRange",
    "DoseRounding",
    "IncompatibleDiluent",
    "InfusionFacts",
    "MaxDoseRate",
    "Monograph",
    "Product",
    "RxCode",
    "Source",
    "diluent",
    "diluents",
    "monograph",
    "monographs",
]

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ROUTES = ("intravenous", "oral", "intramuscular")


@dataclass(frozen=True)
class Source:
    id: str
    kind: str  # package-insert, compendium, guideline, stability-study, published-protocol ...
    citation: str
    url: str | None
    date: str
    read: str  # how much of it was read, and when


@dataclass(frozen=True)
class RxCode:
    code: str
    level: str  # IN, MIN, SCD ...
    verified: bool
    verification: str

    def coding(self, display: str) -> dict[str, str]:
        return {"system": RXNORM, "code": self.code, "display": display}


@dataclass(frozen=True)
class Product:
    id: str
    display: str
    route: str  # intravenous | oral | intramuscular
    dosage_form: str
    rxnorm: tuple[RxCode, ...]
    stock_concentration: Quantity | None  # what is drawn up or poured (solutions)
    unit_strength: Quantity | None  # one tablet (solid forms)
    protocols: tuple[str, ...]  # protocol ids that give exactly this product

    @property
    def solid(self) -> bool:
        return self.unit_strength is not None

    @property
    def codes(self) -> tuple[RxCode, ...]:
        """The verified codes only: the ones that may be written to an order."""
        return tuple(code for code in self.rxnorm if code.verified)


@dataclass(frozen=True)
class Component:
    name: str
    abbreviation: str
    parts: Decimal  # ratio within the combination (sulfamethoxazole 5 : trimethoprim 1)
    rxnorm: RxCode | None


@dataclass(frozen=True)
class Combination:
    dose_component: str  # which component a dose refers to ("sulfamethoxazole")
    abbreviation: str  # "SMX/TMP"
    components: tuple[Component, ...]


@dataclass(frozen=True)
class DoseRange:
    unit: str  # UCUM code of the dose (mg, [iU])
    plausible_min: Decimal
    plausible_max: Decimal
    refuse_above: Decimal
    basis: str
    source: str


@dataclass(frozen=True)
class DoseRounding:
    """How a dose computed from the body surface area is rounded before planning, when the drug's
    monograph states a rule (e.g. to a vial size); without one the dose is rounded to 1 mg (1 unit)."""

    step: Quantity  # e.g. 10 mg
    basis: str
    source: str


@dataclass(frozen=True)
class BeyondUse:
    """How long a prepared solution may be used, as its label (or a stability source) says: hours after
    preparation at room temperature and/or refrigerated. ``verified`` is False when the source was not
    re-read: the label then says to check the pharmacy's stability policy."""

    applies_to: str  # what was prepared: "solution diluted for infusion", "oral dilution" ...
    room_temperature_hours: Decimal | None
    refrigerated_hours: Decimal | None
    basis: str
    source: str
    verified: bool


@dataclass(frozen=True)
class IncompatibleDiluent:
    diluent: str  # a key of data/diluents.json
    reason: str


@dataclass(frozen=True)
class MaxDoseRate:
    amount: Quantity  # e.g. 400 mg
    per_minutes: Decimal  # e.g. 60
    basis: str
    source: str


@dataclass(frozen=True)
class InfusionFacts:
    default_diluent: str
    compatible_diluents: tuple[str, ...]
    incompatible_diluents: tuple[IncompatibleDiluent, ...]
    concentration_min: Quantity | None
    concentration_max: Quantity | None
    concentration_basis: str
    concentration_source: str
    max_dose_rate: MaxDoseRate | None
    container: str | None
    filter: str | None
    handling: tuple[str, ...]

    def incompatibility(self, diluent_id: str) -> IncompatibleDiluent | None:
        return next((i for i in self.incompatible_diluents if i.diluent == diluent_id), None)


@dataclass(frozen=True)
class Diluent:
    id: str
    label: str
    words: tuple[str, ...]
    chloride: bool
    calcium: bool


@dataclass(frozen=True)
class Monograph:
    id: str
    name: str
    synonyms: tuple[str, ...]
    reviewed: str
    ingredient_rxnorm: RxCode | None
    dose: DoseRange
    products: tuple[Product, ...]
    combination: Combination | None
    infusion: InfusionFacts | None
    notes: tuple[str, ...]
    sources: tuple[Source, ...]
    dose_rounding: DoseRounding | None = None
    beyond_use: BeyondUse | None = None

    @property
    def codes(self) -> tuple[RxCode, ...]:
        """Verified ingredient-level code(s) of the drug."""
        code = self.ingredient_rxnorm
        return (code,) if code is not None and code.verified else ()

    def product(self, product_id: str) -> Product:
        for product in self.products:
            if product.id == product_id:
                return product
        raise KeyError(product_id)

    def products_for_route(self, route: str) -> tuple[Product, ...]:
        return tuple(p for p in self.products if p.route == route)

    def source(self, source_id: str) -> Source | None:
        return next((s for s in self.sources if s.id == source_id), None)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)


# --- reading the packaged data ------------------------------------------------------------------


class _Reader:
    """Reads one monograph dict; every error names the file and the field."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, field: str, problem: str) -> ProtocolDefinitionError:
        return ProtocolDefinitionError(f"drug monograph {self.origin}: {field}: {problem}")

    def text(self, data: Mapping[str, Any], key: str, *, optional: bool = False) -> str:
        value = data.get(key)
        if value is None and optional:
            return ""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "a non-empty text is required")
        return value

    def decimal(self, data: Mapping[str, Any], key: str) -> Decimal:
        value = data.get(key)
        if not isinstance(value, str):
            raise self.fail(key, "a decimal number written as text is required")
        try:
            number = Decimal(value)
        except ArithmeticError:
            raise self.fail(key, f"'{value}' is not a number") from None
        if not number.is_finite() or number < 0:
            raise self.fail(key, f"'{value}' is not a finite number of zero or more")
        return number

    def quantity(self, data: Mapping[str, Any], key: str, dimension: Dimension) -> Quantity | None:
        value = data.get(key)
        if value is None:
            return None
        try:
            quantity = parse_quantity(str(value), key)
        except DesensError:
            raise self.fail(key, f"'{value}' is not a quantity") from None
        if quantity.dimension is not dimension:
            raise self.fail(key, f"'{value}' is not a {dimension.value}")
        return quantity

    def rxcode(self, data: Any, field: str) -> RxCode:
        if not isinstance(data, Mapping):
            raise self.fail(field, "an object with code, level, verified and verification is required")
        code = self.text(data, "code")
        if not code.isdigit():
            raise self.fail(field, f"RxNorm code '{code}' is not numeric")
        if not isinstance(data.get("verified"), bool):
            raise self.fail(field, "'verified' must be true or false")
        return RxCode(code, self.text(data, "level"), data["verified"], self.text(data, "verification"))


def _product(reader: _Reader, data: Mapping[str, Any]) -> Product:
    route = reader.text(data, "route")
    if route not in ROUTES:
        raise reader.fail("route", f"'{route}' is not one of {', '.join(ROUTES)}")
    stock = reader.quantity(data, "stock_concentration", Dimension.CONCENTRATION)
    strength = data.get("unit_strength")
    unit_strength = None if strength is None else parse_quantity(str(strength), "unit_strength")
    if (stock is None) == (unit_strength is None):
        raise reader.fail(data.get("id", "product"), "exactly one of stock_concentration and unit_strength")
    return Product(
        id=reader.text(data, "id"),
        display=reader.text(data, "display"),
        route=route,
        dosage_form=reader.text(data, "dosage_form"),
        rxnorm=tuple(reader.rxcode(c, "rxnorm") for c in data.get("rxnorm") or ()),
        stock_concentration=stock,
        unit_strength=unit_strength,
        protocols=tuple(str(p) for p in data.get("protocols") or ()),
    )


def _combination(reader: _Reader, data: Mapping[str, Any] | None) -> Combination | None:
    if data is None:
        return None
    components = tuple(
        Component(
            name=reader.text(c, "name"),
            abbreviation=reader.text(c, "abbreviation"),
            parts=reader.decimal(c, "parts"),
            rxnorm=None if c.get("rxnorm") is None else reader.rxcode(c["rxnorm"], "rxnorm"),
        )
        for c in data.get("components") or ()
    )
    dose_component = reader.text(data, "dose_component")
    if len(components) < 2 or dose_component not in {c.name for c in components}:
        raise reader.fail("combination", "two or more components, one of them the dose_component")
    return Combination(dose_component, reader.text(data, "abbreviation"), components)


def _infusion(
    reader: _Reader, data: Mapping[str, Any] | None, known: Mapping[str, Diluent]
) -> InfusionFacts | None:
    if data is None:
        return None
    compatible = tuple(str(d) for d in data.get("compatible_diluents") or ())
    incompatible = tuple(
        IncompatibleDiluent(reader.text(i, "diluent"), reader.text(i, "reason"))
        for i in data.get("incompatible_diluents") or ()
    )
    default = reader.text(data, "default_diluent")
    for name in (default, *compatible, *(i.diluent for i in incompatible)):
        if name not in known:
            raise reader.fail("diluents", f"unknown diluent '{name}' (see data/diluents.json)")
    if default not in compatible or set(compatible) & {i.diluent for i in incompatible}:
        raise reader.fail(
            "diluents", "the default must be compatible, and no diluent both compatible and not"
        )
    band = data.get("concentration_range") or {}
    rate = data.get("max_dose_rate")
    max_rate = None
    if rate is not None:
        amount = parse_quantity(reader.text(rate, "amount"), "amount")
        max_rate = MaxDoseRate(
            amount,
            reader.decimal(rate, "per_minutes"),
            reader.text(rate, "basis"),
            reader.text(rate, "source"),
        )
    return InfusionFacts(
        default_diluent=default,
        compatible_diluents=compatible,
        incompatible_diluents=incompatible,
        concentration_min=reader.quantity(band, "min", Dimension.CONCENTRATION),
        concentration_max=reader.quantity(band, "max", Dimension.CONCENTRATION),
        concentration_basis=reader.text(band, "basis", optional=True),
        concentration_source=reader.text(band, "source", optional=True),
        max_dose_rate=max_rate,
        container=data.get("container"),
        filter=data.get("filter"),
        handling=tuple(str(h) for h in data.get("handling") or ()),
    )


def _dose_rounding(reader: _Reader, data: Mapping[str, Any] | None) -> DoseRounding | None:
    if data is None:
        return None
    step = parse_quantity(reader.text(data, "step"), "dose_rounding.step")
    if step.dimension not in (Dimension.MASS, Dimension.ACTIVITY) or step.value <= 0:
        raise reader.fail("dose_rounding.step", f"'{step}' is not a positive dose (mg, g, mcg, units)")
    return DoseRounding(step, reader.text(data, "basis"), reader.text(data, "source"))


def _beyond_use(reader: _Reader, data: Mapping[str, Any] | None) -> BeyondUse | None:
    if data is None:
        return None
    hours = {
        key: None if data.get(key) is None else reader.decimal(data, key)
        for key in ("room_temperature_hours", "refrigerated_hours")
    }
    if all(value is None for value in hours.values()):
        raise reader.fail("beyond_use", "room_temperature_hours and/or refrigerated_hours is required")
    if not isinstance(data.get("verified"), bool):
        raise reader.fail("beyond_use.verified", "'verified' must be true or false")
    return BeyondUse(
        applies_to=reader.text(data, "applies_to"),
        room_temperature_hours=hours["room_temperature_hours"],
        refrigerated_hours=hours["refrigerated_hours"],
        basis=reader.text(data, "basis"),
        source=reader.text(data, "source"),
        verified=data["verified"],
    )


def _source(reader: _Reader, data: Mapping[str, Any]) -> Source:
    return Source(
        id=reader.text(data, "id"),
        kind=reader.text(data, "kind"),
        citation=reader.text(data, "citation"),
        url=data.get("url"),
        date=reader.text(data, "date"),
        read=reader.text(data, "read"),
    )


def read_monograph(data: Mapping[str, Any], origin: str, known: Mapping[str, Diluent]) -> Monograph:
    """One monograph from its JSON; :class:`ProtocolDefinitionError` names the file and field at fault."""
    reader = _Reader(origin)
    if data.get("schema") != 1:
        raise reader.fail("schema", "only schema 1 is known")
    dose = data.get("dose") or {}
    dose_range = DoseRange(
        unit=reader.text(dose, "unit"),
        plausible_min=reader.decimal(dose, "plausible_min"),
        plausible_max=reader.decimal(dose, "plausible_max"),
        refuse_above=reader.decimal(dose, "refuse_above"),
        basis=reader.text(dose, "basis"),
        source=reader.text(dose, "source"),
    )
    if not dose_range.plausible_min <= dose_range.plausible_max < dose_range.refuse_above:
        raise reader.fail("dose", "plausible_min <= plausible_max < refuse_above is required")
    result = Monograph(
        id=reader.text(data, "id"),
        name=reader.text(data, "name"),
        synonyms=tuple(str(s) for s in data.get("synonyms") or ()),
        reviewed=reader.text(data, "reviewed"),
        ingredient_rxnorm=None
        if data.get("ingredient_rxnorm") is None
        else reader.rxcode(data["ingredient_rxnorm"], "ingredient_rxnorm"),
        dose=dose_range,
        products=tuple(_product(reader, p) for p in data.get("products") or ()),
        combination=_combination(reader, data.get("combination")),
        infusion=_infusion(reader, data.get("infusion"), known),
        notes=tuple(str(n) for n in data.get("notes") or ()),
        sources=tuple(_source(reader, s) for s in data.get("sources") or ()),
        dose_rounding=_dose_rounding(reader, data.get("dose_rounding")),
        beyond_use=_beyond_use(reader, data.get("beyond_use")),
    )
    _check_sources(reader, result)
    return result


def _check_sources(reader: _Reader, result: Monograph) -> None:
    """Every fact that names a source names one the monograph lists."""
    if not result.products:
        raise reader.fail("products", "at least one product is required")
    if not result.sources:
        raise reader.fail("sources", "at least one dated source is required")
    cited = [result.dose.source]
    if result.dose_rounding is not None:
        cited.append(result.dose_rounding.source)
    if result.beyond_use is not None:
        cited.append(result.beyond_use.source)
    if result.infusion is not None:
        cited.append(result.infusion.concentration_source)
        if result.infusion.max_dose_rate is not None:
            cited.append(result.infusion.max_dose_rate.source)
    for source_id in filter(None, cited):
        if result.source(source_id) is None:
            raise reader.fail("sources", f"'{source_id}' is cited but not listed")


def _data_file(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath("data", name).read_text("utf-8"))


@lru_cache(maxsize=1)
def diluents() -> Mapping[str, Diluent]:
    raw = _data_file("diluents.json")
    return {
        d["id"]: Diluent(d["id"], d["label"], tuple(d["words"]), bool(d["chloride"]), bool(d["calcium"]))
        for d in raw["diluents"]
    }


def diluent(diluent_id: str) -> Diluent:
    return diluents()[diluent_id]


@lru_cache(maxsize=1)
def monographs() -> Mapping[str, Monograph]:
    """Every packaged monograph by id (read once; a malformed file stops the program)."""
    folder = resources.files(__package__).joinpath("data", "monographs")
    known = diluents()
    found: dict[str, Monograph] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        item = read_monograph(json.loads(entry.read_text("utf-8")), entry.name, known)
        if item.id in found or f"{item.id}.json" != entry.name:
            raise ProtocolDefinitionError(
                f"drug monograph {entry.name}: id '{item.id}' must match the file name"
            )
        found[item.id] = item
    return found


def monograph(monograph_id: str) -> Monograph:
    return monographs()[monograph_id]


def tablet_strength(products: Iterable[Product], rxnorm: Iterable[str]) -> Quantity | None:
    """The strength of one tablet of the product an order names by its clinical-drug code (RxNorm SCD):
    an order for "1 tablet" of SMX/TMP DS is 800 mg of sulfamethoxazole."""
    codes = set(rxnorm)
    for product in products:
        if product.unit_strength is not None and any(
            c.level == "SCD" and c.code in codes for c in product.codes
        ):
            return product.unit_strength
    return None


def ordered_tablets_strength(rxnorm: Iterable[str]) -> Quantity | None:
    """:func:`tablet_strength` among every packaged monograph's products (the order names no monograph)."""
    return tablet_strength((p for m in monographs().values() for p in m.products), rxnorm)
