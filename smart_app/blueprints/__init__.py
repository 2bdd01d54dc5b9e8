"""One blueprint per concern: launch (SMART launch and callback), patient (the session pages),
well_known (the app's public key set and a health check)."""
