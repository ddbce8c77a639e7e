"""``fastpool`` command line (also ``python -m fastpool``).

    fastpool bench [URL] [options]     the latency benchmark (fastpool bench --help)
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

USAGE = """usage: fastpool <command> [options]

commands:
  bench [URL]   latency and throughput of fastpool against a raw C client and every Python
                HTTP client installed (fastpool bench --help for every option)
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from . import __version__

        sys.stdout.write(f"fastpool {__version__}\n")
        return 0
    if args[0] == "bench":
        from ._bench import main as bench

        return bench(args[1:])
    sys.stderr.write(f"fastpool: unknown command {args[0]!r}\n\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
