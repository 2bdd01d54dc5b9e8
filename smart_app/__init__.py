"""The SMART on FHIR Flask app."""
