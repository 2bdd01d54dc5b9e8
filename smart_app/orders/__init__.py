"""Signed orders: "Sign and send orders", the read-only signed plan and its print sheets.

``views`` (blueprint ``orders``) and ``signed`` (the glue to :mod:`fhir_desens.course`).
"""
