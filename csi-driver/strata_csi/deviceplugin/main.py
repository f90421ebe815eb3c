"""Entry point of ``strata-device-plugin`` (implemented by the CSI issue)."""

from __future__ import annotations

import sys


def main() -> int:
    print("strata-device-plugin: not yet implemented", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
