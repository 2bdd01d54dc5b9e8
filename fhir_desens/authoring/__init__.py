"""Authoring protocols from a hospital's own tables (CSV): read, recompute exactly, re-verify.

Pure like the engine: text in, a :class:`~fhir_desens.protocol.model.Protocol` out; the command
(``fhir_desens.commands.author``) reads the files and writes the FHIR Bundle.
"""
