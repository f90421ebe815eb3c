"""The Python SDK: ``Volume`` / ``ReadOnlyVolume`` handles (see strata.sdk.volume)."""

from strata.sdk.volume import ReadOnlyVolume, Volume

__all__ = ["ReadOnlyVolume", "Volume"]
