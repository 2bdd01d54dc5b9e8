"""fhir_desens.protocol"""
