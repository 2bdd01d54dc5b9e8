"""fhir_desens.sandbox"""
