"""Durations and sizes as people write them (``90s``, ``1h``, ``7d``; ``512Mi``, ``2G``).

Used by the CLI, the SDK and the operator, so ``--grace 1h`` and ``maxAge: 30d`` mean the
same everywhere. No engine layer depends on another through this module.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTP]i?|[kmgtp]|)[Bb]?")
_SIZE_UNITS = {"": 1, **{u: 1000 ** (i + 1) for i, u in enumerate("KMGTP")}}
_SIZE_UNITS |= {u.lower(): v for u, v in list(_SIZE_UNITS.items()) if u}
_SIZE_UNITS |= {f"{u}i": 1024 ** (i + 1) for i, u in enumerate("KMGTP")}


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``: a number (seconds) or units like ``1h30m``, ``7d``, ``250ms``."""
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration {text!r} is negative")
        return float(text)
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds < 0:
            raise ValueError(f"duration {text!r} is negative")
        return seconds
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise ValueError(
            f"duration {text!r} is not valid; use seconds or units ms/s/m/h/d/w "
            "(e.g. 90s, 1h30m, 7d)"
        )
    return total


def parse_size(text: str | int) -> int:
    """Bytes in ``text``: ``1048576``, ``512Mi``, ``2G``, ``1.5GiB``."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size {text!r} is negative")
        return text
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"size {text!r} is not valid; use bytes or units like 512Mi, 2G, 1GiB")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def format_size(n: int | float) -> str:
    """``1536`` → ``1.5 KiB``: binary units, one decimal."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``5400`` → ``1h30m``; sub-second values in ms."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)
