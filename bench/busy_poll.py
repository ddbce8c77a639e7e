"""Busy-poll (Pool(busy_poll=seconds)): latency and CPU per request with and without it,
warm and after idle gaps, beside the floor.

    .venv/bin/python bench/busy_poll.py [--busy 20e-6,100e-6] [--gaps 0,0.001,0.01]
                                        [-n 20000] [--rounds 3] [--plain] [--hogs N] [--pin]

The embedded server runs in a child process (its CPU is not counted). This process runs, for
each idle gap (0: back to back) and in interleaved rounds of shuffled order: the floor (a raw
C exchange on one pre-opened connection, no busy-poll), and the sync Pool on the C engine
with busy-poll off and at each --busy value, one connection each. A gap is a sleep between
requests (the strategy's idle time); the request after it is what counts for sporadic orders.
Printed per gap: p50, p99, p99.9 over every round's samples pooled (us), CPU per request
(this process's user + system time, median over rounds, us; the sleeps cost none) and the
p50 against the floor's. --hogs N starts N processes that burn a core each for the whole run:
with the 2 cores of a small VM, the spinning client then competes with the server it waits
for; --pin puts the client and the server on CPUs of their own (as a strategy that dedicates
a core would; other processes may still run there). Requests per gap: n back to back, n/4
with a gap under 5 ms, n/20 otherwise (a 10 ms gap makes 1000 requests last 10 s); the tail
of fewer samples is coarser: p99.9 of 5 x 1000 is the 5th largest.

The measurement is fastpool/_bench/features/busy_poll.py (also the ``busy-poll`` mode of
``fastpool bench``); this script is its standalone entry point.
"""

import sys
from pathlib import Path

# this checkout's fastpool, not an installed one (as when the script held the measurement)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastpool._bench.features.busy_poll import main  # noqa: E402

if __name__ == "__main__":
    main()
