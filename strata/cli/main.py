"""Entry point of the ``strata`` command (the engine issue fills in the verbs)."""

from __future__ import annotations

import sys


def main() -> int:
    print("strata: not yet implemented", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
