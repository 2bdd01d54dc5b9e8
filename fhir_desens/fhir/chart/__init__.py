"""What the chart says for planning a desensitization, one module per concern.

Raw FHIR R4 resources (``dict``) in, small immutable records out; no network. Reading is tolerant
like :mod:`fhir_desens.fhir.allergy`: a resource that cannot be used (no drug, unknown unit, not
final) is skipped, never guessed at.

* :mod:`.drugs`: which drug the plan may be for (orders, then drug allergies) and the bridges to
  the cross-reactivity engine (``allergen_ref``, ``drug_ref``).
* :mod:`.measurements`: the latest plausible height and weight, converted exactly to cm and kg.
* :mod:`.values`: the small tolerant accessors both share (codings, JSON numbers).
"""
