"""The Strata CSI driver (csi.strata.dev) and the /dev/fuse device plugin."""
