"""The `byol-discovery` console command: `byol-discovery label ...` serves the labelling page."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = "usage: byol-discovery label [--dataset NAME] [--configfile FILE ...] [--config KEY=VALUE ...] [--host H]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "label":
        from byol_discovery.labelling.command import main as label

        return label(rest)
    print(f"byol-discovery: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
