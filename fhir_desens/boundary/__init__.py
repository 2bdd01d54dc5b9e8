"""Input at the boundary: text and numbers from charts, forms and command lines, made safe once.

Pure (standard library and :mod:`fhir_desens.errors` only), so every layer may use it: the chart
readers clean what an EHR sends, the app and the CLI refuse what a person types.
"""
