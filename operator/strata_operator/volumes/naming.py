"""Names: Kubernetes Volume -> store volume, and store version -> mirrored VolumeVersion.

Both are pure functions of their inputs, so a restarted operator (or a second replica
after a failover) finds the same store volume and the same VolumeVersion objects again
without any stored state. The store name is also written to ``status.storeVolume``, and
once written that value wins, so a future change of the mapping never orphans data.

Store volume names (one store may serve every namespace, so namespaces must be kept
apart, and a store name is a DNS-1123 label of at most 63 characters):

* ``<namespace>--<name>`` when that fits in 63 characters and neither part contains
  ``--``. Kubernetes names never start or end with ``-``, so such a name contains
  exactly one ``--`` and splits back unambiguously: no two Volumes share it.
* otherwise ``<namespace[:18]>---<name[:29]>-<hash>``: the parts cut short (trailing
  ``-`` dropped), and 12 hex digits of sha256 over ``namespace/name``. It always
  contains ``---``, which the plain form never does, so the two forms cannot collide,
  and two hashed names collide only if sha256 does.
"""

from __future__ import annotations

import hashlib

__all__ = ["MAX_LABEL", "store_volume_name", "version_object_name"]

MAX_LABEL = 63
_HASH = 12
_NS_PART = 18
_NAME_PART = MAX_LABEL - _NS_PART - 3 - 1 - _HASH  # 29, room for "---" and "-<hash>"


def store_volume_name(namespace: str, name: str) -> str:
    """The store volume behind the Kubernetes Volume ``namespace/name``."""
    plain = f"{namespace}--{name}"
    if len(plain) <= MAX_LABEL and "--" not in namespace and "--" not in name:
        return plain
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:_HASH]
    ns_part = namespace[:_NS_PART].rstrip("-")
    name_part = name[:_NAME_PART].rstrip("-")
    return f"{ns_part}---{name_part}-{digest}"


def version_object_name(volume: str, version_id: str) -> str:
    """``<volume>-<versionid>``, the volume part cut so the whole is a 63-char label.

    Version ids are unique per commit, so a cut volume part never makes two versions
    of different Volumes share a name in practice; the mirror still checks the owner
    label of an existing object before treating it as the mirror of a version.
    """
    room = MAX_LABEL - 1 - len(version_id)
    return f"{volume[:room].rstrip('-')}-{version_id}"
