"""Strata engine layer: meta — trees, versions, heads, writer claims, diff and GC.

The sealed side of a volume lives here: the on-store format of tree objects
(:mod:`strata.meta.treefmt`), version manifests (:mod:`strata.meta.version`) and heads
(:mod:`strata.meta.head`), and :class:`Repository`, the small public API over them.
docs/format.md describes the same format for other programs.
"""

from strata.meta.diff import Diff, diff_trees
from strata.meta.entry import BlockRef, Content, Entry, Kind
from strata.meta.gc import GcReport, collect_garbage
from strata.meta.head import Head, Retention, Settings, WriterState
from strata.meta.names import check_version_id, check_volume_name, format_ref, parse_ref
from strata.meta.repo import Repository, VolumeInfo
from strata.meta.tree import NodeCache, TreeReader, TreeWriter
from strata.meta.version import Stats, Version, VersionInUse
from strata.meta.writers import WriterClaim

__all__ = [
    "BlockRef",
    "Content",
    "Diff",
    "Entry",
    "GcReport",
    "Head",
    "Kind",
    "NodeCache",
    "Repository",
    "Retention",
    "Settings",
    "Stats",
    "TreeReader",
    "TreeWriter",
    "Version",
    "VersionInUse",
    "VolumeInfo",
    "WriterClaim",
    "WriterState",
    "check_version_id",
    "check_volume_name",
    "collect_garbage",
    "diff_trees",
    "format_ref",
    "parse_ref",
]
