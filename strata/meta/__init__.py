"""Strata engine layer: meta (see docs/architecture.md)."""
