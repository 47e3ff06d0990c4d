"""Thin route modules: validate → call the engine → return a schema."""
