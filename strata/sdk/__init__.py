"""Strata engine layer: sdk (see docs/architecture.md)."""
