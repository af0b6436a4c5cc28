"""A bare MQTT echo: every QoS 1 message on ``bench/<tag>/req`` goes back, unchanged, on
``bench/<tag>/rep`` (QoS 1). The far end of the MQTT round-trip baseline: the least any
responder behind the same broker can do.

    python -m benchlib.echo PORT TAG      (prints "ready" once subscribed)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import aiomqtt

from benchlib.procs import NODELAY, QUIET


async def main(port: int, tag: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-echo-{tag}",
                              socket_options=NODELAY, logger=QUIET) as client:
        await client.subscribe(f"bench/{tag}/req", qos=1)
        print("ready", flush=True)
        rep = f"bench/{tag}/rep"

        async def serve() -> None:
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes) else b""
                await client.publish(rep, payload, qos=1)

        task = asyncio.create_task(serve())
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
