"""The bedside concern: start a session from a signed plan, the live flowsheet, the session record."""
