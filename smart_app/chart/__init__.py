"""The patient page: banner, allergy list with contraindication screening, the patient's signed plans."""
