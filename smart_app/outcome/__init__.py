"""Bringing the outcome back to the chart (pages and panels)."""
