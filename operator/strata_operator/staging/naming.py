"""Deterministic, DNS-safe names and label values for staging PVCs.

A StagingVolume's PVC name is a pure function of the operator's prefix and the run's
raw ``dagId``/``runId``: re-running, or clearing and re-running, a DAG run finds the
same PVC without any stored state. The rules:

* lowercase; Unicode folded to ASCII where it has an ASCII base letter (``é`` -> ``e``);
  every other character outside ``[a-z0-9]`` becomes ``-``; runs of ``-`` collapse;
  leading/trailing ``-`` are trimmed;
* at most 63 characters (a DNS-1123 label, so the name also fits in label values and
  in names derived from it);
* a ``-`` and 8 hex digits of sha256 over the *raw* ids are appended whenever the
  readable part is not a faithful, unambiguous copy of the ids: sanitising changed
  something, the name had to be truncated, or an id contains ``-`` (``a-b``/``c`` and
  ``a``/``b-c`` would otherwise both read ``a-b-c``). So two different runs never get
  the same name, however similar their ids.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = ["MAX_NAME", "label_value", "pvc_name", "sanitize", "short_hash"]

MAX_NAME = 63
HASH_LEN = 8
_INVALID = re.compile(r"[^a-z0-9]+")
_PLAIN = re.compile(r"^[a-z0-9]+$")


def sanitize(text: str) -> str:
    """Fold ``text`` to ``[a-z0-9-]``, collapsing and trimming dashes (may be empty)."""
    folded = unicodedata.normalize("NFKD", text)
    ascii_only = "".join(c for c in folded if not unicodedata.combining(c))
    return _INVALID.sub("-", ascii_only.lower()).strip("-")


def short_hash(*parts: str) -> str:
    """8 hex digits of sha256 over ``parts`` joined by NUL (NUL cannot occur in ids)."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:HASH_LEN]


def _with_hash(readable: str, digest: str, max_len: int) -> str:
    """``readable`` cut to fit, then ``-digest``; the digest alone if nothing is left."""
    room = max_len - len(digest) - 1
    head = readable[:room].strip("-")
    return f"{head}-{digest}" if head else digest


def label_value(raw: str) -> str:
    """A label value for ``raw`` (``strata.dev/dag``, ``strata.dev/run``).

    Sanitised exactly like PVC names; the raw id itself goes in an annotation.
    """
    clean = sanitize(raw)
    if clean == raw and len(clean) <= MAX_NAME:
        return clean
    return _with_hash(clean, short_hash(raw), MAX_NAME)


def pvc_name(prefix: str, dag_id: str, run_id: str) -> str:
    """``<prefix>-staging-<dag>-<run>``, DNS-1123 label, unique per (dag_id, run_id).

    ``prefix`` is the operator's setting and is already a valid DNS label fragment
    (checked by :class:`strata_operator.settings.Settings`).
    """
    readable = sanitize(f"{prefix}-staging-{dag_id}-{run_id}")
    faithful = bool(_PLAIN.match(dag_id)) and bool(_PLAIN.match(run_id))
    if faithful and len(readable) <= MAX_NAME:
        return readable
    return _with_hash(readable, short_hash(dag_id, run_id), MAX_NAME)
