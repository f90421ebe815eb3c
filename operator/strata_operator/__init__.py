"""The Strata operator (kopf): Volume, VolumeVersion and StagingVolume."""
