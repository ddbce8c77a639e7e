"""poll(2)'s event bits and send(2)'s MSG_DONTWAIT for the pure engine, read where the
platform has them, so that importing the engine works where it cannot run (Windows: no
select.poll). Opening a pool there is refused first (fastpool._engine.PURE_UNSUPPORTED), so
the fallbacks are never used to wait: they only keep the import from failing."""

from __future__ import annotations

import select
import socket

# The fallbacks are the values Linux, macOS and the BSDs share.
POLLIN: int = getattr(select, "POLLIN", 0x001)
POLLPRI: int = getattr(select, "POLLPRI", 0x002)
POLLOUT: int = getattr(select, "POLLOUT", 0x004)
POLLERR: int = getattr(select, "POLLERR", 0x008)
POLLHUP: int = getattr(select, "POLLHUP", 0x010)
#: Linux only: the peer shut down its writing half (a FIN) even while bytes are unread.
POLLRDHUP: int = getattr(select, "POLLRDHUP", 0)
#: 0 where it is missing: a send would then block in the kernel (never reached, see above).
MSG_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)
