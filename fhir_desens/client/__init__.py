"""fhir_desens.client"""
