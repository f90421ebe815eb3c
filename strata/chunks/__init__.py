"""Strata engine layer: chunks (see docs/architecture.md)."""
