"""The course of a desensitization over a FHIR client: plan lifecycle and the bedside record (no Flask)."""
