"""fhir-desens: FHIR-native rapid drug desensitization planning and recording."""

__version__ = "0.1.0"
