"""A burst of 10 quotes: one pipeline vs 10 sequential requests vs 10 concurrent ones.

    .venv/bin/python bench/pipeline.py [-n 1000] [--rounds 3] [--burst 10] [--plain]
                                       [--gap-ms 0] [--engine c|python] [--only NAME,...]

The embedded server (HTTPS, TLS 1.3, unless --plain) runs in a child process, so its CPU is
not counted. This process runs, in interleaved rounds of shuffled order, n bursts of `burst`
GETs of /api/v3/ticker (each with its own symbol) for each client:

    floor             the raw C loop (floor_latencies) on one connection: burst requests
                      one after the other, no Python (the sequential floor)
    *-pipeline        pool.pipeline(): one connection, one write, the responses in order
    *-sequential      burst x pool.get() one after the other (one connection)
    sync-threads      burst threads (a ThreadPoolExecutor) each doing one pool.get()
                      (burst connections)
    async-*-gather    asyncio.gather of burst pool.get() (burst connections)

Wall time is per burst (the last response in hand), p50 and p99 over the round; CPU is this
process's user + system time (getrusage, every thread) per burst. Printed: medians over
rounds, and each p50 and CPU as a ratio to the floor's. --gap-ms sleeps between bursts (not
counted): a strategy's bursts are sporadic, and the first request after an idle gap pays for
cold caches and a sleeping CPU (the floor keeps no gap: it is one C loop). The floor needs
the C engine: with --engine python it is left out and the ratios with it.

The measurement is fastpool/_bench/features/pipeline.py (also the ``pipeline`` mode of
``fastpool bench``); this script is its standalone entry point.
"""

import sys
from pathlib import Path

# this checkout's fastpool, not an installed one (as when the script held the measurement)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastpool._bench.features.pipeline import main  # noqa: E402

if __name__ == "__main__":
    main()
