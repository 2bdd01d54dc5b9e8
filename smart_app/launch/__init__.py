"""SMART launch (EHR and standalone), the OAuth callback, the app's JWK set and health check."""
