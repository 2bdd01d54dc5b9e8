"""fhir_desens.io"""
