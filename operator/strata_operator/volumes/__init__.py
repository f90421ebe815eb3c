"""Volumes and VolumeVersions: store naming, reconcilers, the mirror loop and store GC."""
