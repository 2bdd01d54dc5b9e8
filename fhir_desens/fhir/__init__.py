"""fhir_desens.fhir"""
