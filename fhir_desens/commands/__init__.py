"""One module per `fhir-desens` subcommand (see fhir_desens/cli.py)."""
