"""Printed paper: PDF rendering of the sheets (WeasyPrint), labels and pharmacy preparation."""
