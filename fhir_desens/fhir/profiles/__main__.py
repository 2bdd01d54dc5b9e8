"""``python -m fhir_desens.fhir.profiles``: build (or ``--check``) the files of ``profiles/``."""

from fhir_desens.fhir.profiles.cli import main

raise SystemExit(main())
