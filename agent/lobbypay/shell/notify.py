"""sd_notify: READY, STATUS, STOPPING and WATCHDOG for systemd ``Type=notify`` units.

The wire format is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace). Without the variable
every call does nothing, so the agent runs the same outside systemd. About twenty lines
do not justify a dependency (``sdnotify`` is unmaintained; ``systemd-python`` needs
libsystemd headers to build).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self._addr: str | None = None
        if addr:
            self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1_000_000

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def send(self, **fields: str) -> bool:
        if self._addr is None:
            return False
        msg = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(msg, self._addr)
            return True
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc.strerror)
            return False

    def ready(self, status: str = "") -> None:
        if status:
            self.send(ready="1", status=status)
        else:
            self.send(ready="1")

    def status(self, text: str) -> None:
        self.send(status=text)

    def stopping(self) -> None:
        self.send(stopping="1")

    async def watchdog_loop(self) -> None:
        """Ping at half the watchdog interval from the event loop itself (a wedged loop
        stops pinging and systemd restarts the service)."""
        if self.watchdog_s is None or self._addr is None:
            return
        interval = self.watchdog_s / 2
        while True:
            self.send(watchdog="1")
            await asyncio.sleep(interval)
