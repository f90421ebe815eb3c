"""Names of volumes and versions, and the one reference syntax ``NAME@VERSION``.

Volume names are DNS-1123 labels (1-63 characters of ``a-z``, ``0-9`` and ``-``,
starting and ending with a letter or digit) so the same name works as a Kubernetes
object name, a store key component and a CLI argument without escaping. Version ids
follow the same rule; the ids Strata generates are 16 characters of lowercase RFC 4648
base32 (``a-z2-7``), see :mod:`strata.meta.version`.
"""

from __future__ import annotations

import re

from strata.errors import InvalidName

MAX_LABEL = 63

_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")

_ALLOWED = (
    "1-63 lowercase letters, digits and '-', starting and ending with a letter or digit "
    "(a DNS-1123 label)"
)


def _check_label(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidName(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidName(f"{what} is empty; use {_ALLOWED}")
    if len(value) > MAX_LABEL:
        raise InvalidName(f"{what} {value!r} is {len(value)} characters long; use {_ALLOWED}")
    if _LABEL_RE.fullmatch(value) is None:
        raise InvalidName(f"{what} {value!r} is not valid; use {_ALLOWED}")
    return value


def check_volume_name(name: str) -> str:
    """Return ``name`` if it is a valid volume name, else raise :class:`InvalidName`."""
    return _check_label(name, "volume name")


def check_version_id(version: str) -> str:
    """Return ``version`` if it is a syntactically valid version id, else raise.

    Validation is by the DNS-1123 rule rather than the exact generated shape, so ids
    from a future id scheme still parse; lookups decide whether the id exists.
    """
    return _check_label(version, "version id")


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split ``"name@version"`` into ``(name, version)``; ``"name"`` gives ``(name, None)``.

    Both parts are validated, so a parsed reference is always safe to put in a key.
    """
    if not isinstance(ref, str):
        raise InvalidName(f"a reference must be a string, not {type(ref).__name__}")
    name, sep, version = ref.partition("@")
    check_volume_name(name)
    if not sep:
        return name, None
    if "@" in version:
        raise InvalidName(f"reference {ref!r} has more than one '@'; use NAME or NAME@VERSION")
    return name, check_version_id(version)


def format_ref(name: str, version: str | None) -> str:
    """The inverse of :func:`parse_ref`."""
    return name if version is None else f"{name}@{version}"
