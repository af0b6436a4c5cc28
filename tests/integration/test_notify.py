"""sd_notify over a real AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from lobbypay.shell.notify import Notifier


def test_no_socket_is_a_no_op() -> None:
    n = Notifier(env={})
    assert not n.enabled and not n.send(ready="1") and n.watchdog_s is None


async def test_ready_status_watchdog(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(path)
        srv.settimeout(2)
        n = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        n.ready("terminal lobby-1")
        assert srv.recv(512) == b"READY=1\nSTATUS=terminal lobby-1"
        assert n.watchdog_s == 0.2
        task = asyncio.create_task(n.watchdog_loop())
        await asyncio.sleep(0.25)
        task.cancel()
        pings = []
        srv.settimeout(0.1)
        while True:
            try:
                pings.append(srv.recv(64))
            except TimeoutError:
                break
        assert pings.count(b"WATCHDOG=1") >= 2
        n.stopping()
        srv.settimeout(1)
        assert srv.recv(64) == b"STOPPING=1"


def test_abstract_socket_address() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind("\0lobbypay-test-notify")
        srv.settimeout(2)
        Notifier(env={"NOTIFY_SOCKET": "@lobbypay-test-notify"}).status("hi")
        assert srv.recv(64) == b"STATUS=hi"


def test_watchdog_for_other_pid_ignored() -> None:
    n = Notifier(env={"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert n.watchdog_s is None


def test_status_line_summarises_state() -> None:
    from lobbypay.app import status_line

    idle = {"job_id": None, "job_state": "idle", "reader": {"connected": True}, "outbox": 0}
    assert status_line(idle, True) == "idle; reader ok; broker ok"
    busy = {"job_id": "j-1", "job_state": "pending", "reader": {"connected": False}, "outbox": 2}
    assert status_line(busy, False) == (
        "job j-1 pending; reader DISCONNECTED; broker DISCONNECTED, 2 event(s) waiting")
