"""The REST API under /api/v1/ for downstream systems: keys and scopes, one error handler; nothing imports it."""
