"""Entry point of ``strata-operator`` (implemented by the operator issue)."""

from __future__ import annotations

import sys


def main() -> int:
    print("strata-operator: not yet implemented", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
