"""Protocol exchange between hospitals: packages, validation, import into and fetch from FHIR servers.

* :mod:`~fhir_desens.exchange.package`: build a FHIR NPM package (``.tgz``) and read one safely;
* :mod:`~fhir_desens.exchange.load`: any input (resource, Bundle, package; JSON or XML) as resources;
* :mod:`~fhir_desens.exchange.validate`: the three validation layers and their report;
* :mod:`~fhir_desens.exchange.consistency`: the clinical layer (re-computed doses, invariants);
* :mod:`~fhir_desens.exchange.library`: imported protocols for the app (validated, no node needed);
* :mod:`~fhir_desens.exchange.importer` and :mod:`~fhir_desens.exchange.fetch`: talk to FHIR servers.

Only ``importer``, ``fetch`` and ``remote`` import the HTTP client; the rest does no network.
"""
