"""Planning: the start form, the worksheet with its edit forms, the print and pharmacy sheets.

``views`` (blueprint ``plan``), ``forms`` (form parsing, labels), ``drafts`` (drafts kept in the
session store, edits), ``worksheet`` (the engine's plan formatted for people), ``timeline`` (SVG).
"""
