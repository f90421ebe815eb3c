"""Strata engine layer: store (see docs/architecture.md)."""
