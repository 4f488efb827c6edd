"""Forgeyard's REST API (Starlette): routes per resource, auth, limits, errors; it runs nothing itself."""
