"""Coded lists for reactions at the bedside: symptoms (SNOMED CT), grade, phenotype, rescue treatments.

``verified`` says whether the SNOMED code and display were read in a real source: the codes marked True
appear with that display in the FHIR data of ../shared/data (Synthea bulk data, US Core and FHIR R4
examples); the others are from memory and are sent with ``userSelected`` false and flagged in the
AdverseEvent (an extension-free ``text`` always carries the nurse's words).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_desens.errors import InputError

SNOMED = "http://snomed.info/sct"


@dataclass(frozen=True)
class Symptom:
    key: str
    label: str
    code: str
    display: str
    verified: bool


SYMPTOMS = (
    Symptom("itching", "Itching", "418290006", "Itching (finding)", True),
    Symptom("wheal", "Wheals / hives", "247472004", "Wheal (finding)", True),
    Symptom("rash", "Rash", "271807003", "Eruption of skin (disorder)", True),
    Symptom(
        "angioedema", "Swelling of lips, tongue or face", "402387002", "Allergic angioedema (disorder)", True
    ),
    Symptom("dyspnea", "Shortness of breath", "267036007", "Dyspnea (finding)", True),
    Symptom("wheezing", "Wheezing", "56018004", "Wheezing (finding)", True),
    Symptom("cough", "Cough", "49727002", "Cough (finding)", True),
    Symptom("sneezing", "Sneezing", "76067001", "Sneezing", True),
    Symptom(
        "rhinoconjunctivitis", "Runny nose, red eyes", "878820003", "Rhinoconjunctivitis (disorder)", True
    ),
    Symptom("nausea", "Nausea", "422587007", "Nausea (finding)", True),
    Symptom("abdominal-pain", "Abdominal pain", "21522001", "Abdominal pain (finding)", True),
    Symptom("diarrhea", "Diarrhoea", "62315008", "Diarrhea (finding)", True),
    Symptom("fever", "Fever", "386661006", "Fever (finding)", True),
    Symptom("chills", "Chills / rigors", "43724002", "Chill (finding)", True),
    Symptom("anaphylaxis", "Anaphylaxis", "39579001", "Anaphylaxis (disorder)", True),
    Symptom("hypotension", "Low blood pressure", "45007003", "Low blood pressure (disorder)", False),
    Symptom("urticaria", "Urticaria", "126485001", "Urticaria (disorder)", False),
    Symptom("vomiting", "Vomiting", "422400008", "Vomiting (disorder)", False),
    Symptom("tachycardia", "Fast heart rate", "3424008", "Tachycardia (finding)", False),
    Symptom("headache", "Headache", "25064002", "Headache (finding)", False),
)
SYMPTOM_BY_KEY = {s.key: s for s in SYMPTOMS}

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
        raise InputError(field, "at least one symptom is required for a reaction", ", ".join(SYMPTOM_BY_KEY))
    unknown = [k for k in keys if k not in SYMPTOM_BY_KEY]
    if unknown:
        raise InputError(field, f"unknown symptom '{unknown[0]}'", ", ".join(SYMPTOM_BY_KEY))
    return tuple(SYMPTOM_BY_KEY[k] for k in keys)


def choice(value: object, accepted: dict[str, str], field: str) -> str:
    if not isinstance(value, str) or value not in accepted:
        raise InputError(field, f"'{value}' is not one of the choices", ", ".join(accepted))
    return value


__all__ = [
    "GRADES",
    "NEEDS_ALLERGIST_TO_RESUME",
    "PHENOTYPES",
    "SYMPTOMS",
    "SYMPTOM_BY_KEY",
    "TREATMENTS",
    "TREATMENT_BY_KEY",
    "Symptom",
    "Treatment",
    "choice",
    "symptoms_from",
]
