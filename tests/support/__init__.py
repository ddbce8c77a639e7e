"""Real-world test peers for fastpool's tests.

* ``support.certs``  — a test PKI (root CA, good and bad server certificates, mTLS client certs)
  generated with ``cryptography`` into a directory.
* ``support.nginx``  — a private nginx (Debian's package) on loopback ports: plain, TLS 1.2,
  TLS 1.3, both, mTLS, one listener per bad certificate, IPv6; JSON access log with connection
  serials and TLS session reuse.
* ``support.faults`` — scripted misbehaving HTTP servers (stdlib sockets + threads, optional TLS)
  that record what they received.
* ``support.ports``  — free loopback ports, IPv6 detection, bounded readiness waits.
* ``support.fixtures`` — the pytest fixtures over all of the above (made available to every
  test by ``tests/conftest.py``).

Everything binds loopback addresses only and is stopped at teardown.
"""
