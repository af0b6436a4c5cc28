"""A serial port as an asyncio transport, shared by the serial reader and the serial
displays.

The transport comes from pyserial-asyncio-fast (what pip installs) or, where that is
absent, from pyserial-asyncio (module ``serial_asyncio``; Debian's python3-serial-asyncio,
which the .deb depends on). Both expose the same ``create_serial_connection`` and a
transport with ``write``, ``abort`` and ``is_closing``; docs/ARCHITECTURE.md says why.

``open_port`` returns once the port is open; ``SerialLink.lost`` resolves when the port
goes away (unplug: the read fails with EIO and pyserial raises ``SerialException``).
``close()`` aborts rather than closes: a graceful close would ``tcdrain`` the output in an
executor thread, which can hang on a wedged or disconnected device.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

# How long close() waits for the transport to finish tearing down (it closes the fd in
# an executor thread).
CLOSE_WAIT_S = 2.0


def transport_module() -> ModuleType:
    """The asyncio serial module in use: ``serial_asyncio_fast``, else ``serial_asyncio``."""
    try:
        import serial_asyncio_fast
    except ImportError:
        import serial_asyncio  # type: ignore[import-untyped,import-not-found,unused-ignore]

        module: ModuleType = serial_asyncio
        return module
    return serial_asyncio_fast


class _LinkProtocol(asyncio.Protocol):
    def __init__(self, on_data: Callable[[bytes], None] | None) -> None:
        self._on_data = on_data
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self._on_data is not None:
            self._on_data(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class SerialLink:
    __slots__ = ("transport", "_protocol")

    def __init__(self, transport: Any, protocol: _LinkProtocol) -> None:
        self.transport = transport
        self._protocol = protocol

    @property
    def lost(self) -> asyncio.Future[BaseException | None]:
        return self._protocol.lost

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.abort()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._protocol.lost), CLOSE_WAIT_S)


async def open_port(
    path: str, baudrate: int, on_data: Callable[[bytes], None] | None = None
) -> SerialLink:
    """Open ``path`` at ``baudrate`` (8N1, no flow control). Raises OSError-like errors
    (``serial.SerialException`` is an ``OSError`` subclass in pyserial 3.5 on POSIX)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await transport_module().create_serial_connection(
        loop, lambda: _LinkProtocol(on_data), path, baudrate=baudrate, exclusive=True
    )
    assert isinstance(protocol, _LinkProtocol)
    return SerialLink(transport, protocol)
