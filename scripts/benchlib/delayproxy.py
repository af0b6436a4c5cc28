"""A TCP proxy that delays every chunk by a fixed time each way, in the role of the
internet between a terminal and athena (each round trip costs twice the delay, the TCP
and TLS handshakes included).

    python -m benchlib.delayproxy TARGET_PORT DELAY_MS   (prints "ready PORT")
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(65536):
            # each chunk leaves delay_s after it arrived; order is kept (same delay)
            loop.call_later(delay_s, writer.write, data)
        await asyncio.sleep(delay_s)
        with contextlib.suppress(OSError):
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        await asyncio.sleep(delay_s)
        writer.close()


async def main(target_port: int, delay_ms: float) -> None:
    delay_s = delay_ms / 1000

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        # the TCP handshake's round trip: the client's connect() returns at once here,
        # so its first bytes wait for it instead (they reach the server 3 delays later,
        # as over a real link: SYN, SYN-ACK, then the data)
        await asyncio.sleep(2 * delay_s)
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            cw.close()
            return
        for w in (cw, sw):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(_pipe(cr, sw, delay_s), _pipe(sr, cw, delay_s))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {port}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
