"""Coded lists for reactions at the bedside: symptoms (SNOMED CT), grade, phenotype, rescue treatments.

Every symptom's SNOMED CT code carries ``source``: where the code and its display were read. A symptom
whose code was not verified (``source`` empty) is written as text only, never with a code
(:meth:`Symptom.concept`); today every code on the list is verified. Sources: SHARED = the
code appears with that display in the FHIR data of ../shared/data (Synthea bulk data, US Core and FHIR R4
examples); the others name the published HL7 guide or terminology release that lists it (docs/terminology.md).

Hives are one concept with one option: Urticaria (disorder) 126485001, the code of the IPS allergy reaction
value set that the outcome's ``AllergyIntolerance.reaction.manifestation`` uses. Sessions recorded when the
list also offered "Wheals / hives" (Wheal (finding) 247472004) keep that key and code: it is still read and
shown (:data:`RECORDED_ONLY`), never offered again.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_desens.errors import InputError

SNOMED = "http://snomed.info/sct"


SHARED = "shared-data"
IPS = "HL7 IPS allergy-reaction-uv-ips value set (ECL names 126485001 |Urticaria (disorder)|)"
CH_EMS = "HL7 Switzerland CH EMS IG, IVR-VS-pulesResult (tx.fhir.ch expansion, SNOMED CT Swiss edition 2025)"
AE_RESEARCH = "HL7 Adverse Event Clinical Research IG 1.0.1, example Condition AEHeadache"
OHDSI = "OHDSI vocabulary (SNOMED, standard, valid) as used in OHDSI/Legend concept sets"


@dataclass(frozen=True)
class Symptom:
    key: str
    label: str
    code: str
    display: str
    source: str  # where the code was read; "" = unverified: written as text only

    @property
    def verified(self) -> bool:
        return bool(self.source)

    def coding(self) -> list[dict[str, str]]:
        """The SNOMED CT coding, or none when the code is unverified."""
        return [{"system": SNOMED, "code": self.code, "display": self.display}] if self.verified else []

    def concept(self) -> dict[str, object]:
        """As a FHIR CodeableConcept: the nurse's words, with the code only when it is verified."""
        coding = self.coding()
        return {"coding": coding, "text": self.label} if coding else {"text": self.label}


SYMPTOMS = (
    Symptom("itching", "Itching", "418290006", "Itching (finding)", SHARED),
    Symptom("urticaria", "Hives (urticaria)", "126485001", "Urticaria (disorder)", IPS),
    Symptom("rash", "Rash", "271807003", "Eruption of skin (disorder)", SHARED),
    Symptom(
        "angioedema",
        "Swelling of lips, tongue or face",
        "402387002",
        "Allergic angioedema (disorder)",
        SHARED,
    ),
    Symptom("dyspnea", "Shortness of breath", "267036007", "Dyspnea (finding)", SHARED),
    Symptom("wheezing", "Wheezing", "56018004", "Wheezing (finding)", SHARED),
    Symptom("cough", "Cough", "49727002", "Cough (finding)", SHARED),
    Symptom("sneezing", "Sneezing", "76067001", "Sneezing", SHARED),
    Symptom(
        "rhinoconjunctivitis", "Runny nose, red eyes", "878820003", "Rhinoconjunctivitis (disorder)", SHARED
    ),
    Symptom("nausea", "Nausea", "422587007", "Nausea (finding)", SHARED),
    Symptom("abdominal-pain", "Abdominal pain", "21522001", "Abdominal pain (finding)", SHARED),
    Symptom("diarrhea", "Diarrhoea", "62315008", "Diarrhea (finding)", SHARED),
    Symptom("fever", "Fever", "386661006", "Fever (finding)", SHARED),
    Symptom("chills", "Chills / rigors", "43724002", "Chill (finding)", SHARED),
    Symptom("anaphylaxis", "Anaphylaxis", "39579001", "Anaphylaxis (disorder)", SHARED),
    Symptom("hypotension", "Low blood pressure", "45007003", "Low blood pressure (disorder)", OHDSI),
    Symptom("vomiting", "Vomiting", "422400008", "Vomiting (disorder)", OHDSI),
    Symptom("tachycardia", "Fast heart rate", "3424008", "Tachycardia (finding)", CH_EMS),
    Symptom("headache", "Headache", "25064002", "Headache (finding)", AE_RESEARCH),
)
#: symptoms no longer offered that recorded sessions still carry (read, shown and sent as recorded)
RECORDED_ONLY = (Symptom("wheal", "Wheals / hives", "247472004", "Wheal (finding)", SHARED),)
SYMPTOM_BY_KEY = {s.key: s for s in (*SYMPTOMS, *RECORDED_ONLY)}
#: the symptoms offered, in the nurse's words (what a refusal says is accepted)
OFFERED = ", ".join(s.label for s in SYMPTOMS)

# Brown 2004 (clinical.md S28): mild = skin and subcutaneous tissue only; moderate = respiratory,
# cardiovascular or gastrointestinal involvement; severe = hypoxia, hypotension or neurological compromise.
GRADES = {
    "mild": "Mild: skin and subcutaneous tissue only",
    "moderate": "Moderate: respiratory, cardiovascular or gastrointestinal features",
    "severe": "Severe: hypoxia (SpO2 ≤ 92 %), hypotension (SBP < 90) or neurological compromise",
}
NEEDS_ALLERGIST_TO_RESUME = frozenset({"moderate", "severe"})
PHENOTYPES = {
    "type-i": "Type I-like (IgE / mast cell)",
    "cytokine-release": "Cytokine-release (fever, chills, pain)",
    "mixed": "Mixed",
}


@dataclass(frozen=True)
class Treatment:
    key: str
    label: str


TREATMENTS = (
    Treatment("epinephrine-im", "Epinephrine IM"),
    Treatment("antihistamine-h1", "H1 antihistamine (e.g. diphenhydramine IV)"),
    Treatment("famotidine", "Famotidine IV"),
    Treatment("methylprednisolone", "Methylprednisolone IV"),
    Treatment("albuterol", "Albuterol nebulised"),
    Treatment("fluids", "IV fluids (normal saline bolus)"),
    Treatment("oxygen", "Oxygen"),
)
TREATMENT_BY_KEY = {t.key: t for t in TREATMENTS}


def symptoms_from(keys: list[str], field: str = "symptoms") -> tuple[Symptom, ...]:
    if not keys:
        raise InputError(field, "at least one symptom is required for a reaction", OFFERED)
    unknown = [k for k in keys if k not in SYMPTOM_BY_KEY]
    if unknown:
        raise InputError(field, f"unknown symptom '{unknown[0]}'", OFFERED)
    return tuple(SYMPTOM_BY_KEY[k] for k in keys)


def symptom_words(key: str) -> str:
    """A recorded symptom key in the nurse's words ('Hives (urticaria)'); an unknown key as it is."""
    symptom = SYMPTOM_BY_KEY.get(key)
    return symptom.label if symptom else key


def words_of(accepted: dict[str, str]) -> str:
    """The choices as the form shows them (their words; a choice without words is its own word)."""
    return "; ".join(words or key for key, words in accepted.items())


def choice(value: object, accepted: dict[str, str], field: str) -> str:
    if not isinstance(value, str) or value not in accepted:
        raise InputError(field, f"'{value}' is not one of the choices", words_of(accepted))
    return value


__all__ = [
    "GRADES",
    "NEEDS_ALLERGIST_TO_RESUME",
    "OFFERED",
    "PHENOTYPES",
    "RECORDED_ONLY",
    "SYMPTOMS",
    "SYMPTOM_BY_KEY",
    "TREATMENTS",
    "TREATMENT_BY_KEY",
    "Symptom",
    "Treatment",
    "choice",
    "symptom_words",
    "symptoms_from",
    "words_of",
]
