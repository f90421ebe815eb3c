"""Strata engine layer: fs (see docs/architecture.md)."""
