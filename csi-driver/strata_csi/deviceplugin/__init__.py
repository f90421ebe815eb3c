"""Kubelet device plugin that advertises strata.dev/fuse."""
