"""A full disk and a held write lock at each journal write of a charge, with the agent as
a process (protocol.md 5: no job is lost; the terminal never stays stuck).

The state directory is a real, small tmpfs; "full" is a filler file written until the
kernel says ENOSPC, exactly what a terminal's SD card does when something else fills it.
The lock is another process holding SQLite's write lock (as an operator's sqlite3 shell
or a backup tool can). Every case: at most one POST, the job's true outcome is kept and
published once the disk takes it, the terminal is free again, nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    CANARY_TRACKS,
    AgentProcess,
    AppClient,
    AthenaSimProcess,
    PtyReader,
    started,
)

PATIENT = "60178"
CLAIMS = [{"claim_id": "5569", "amount": "40.00"}]
TMPFS_SIZE = "8m"


def _mount_tmpfs(where: Path) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs",
                        str(where)], capture_output=True)
    return r.returncode == 0


class Disk:
    """A small tmpfs for the state directory, and a filler that takes all its space."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self) -> None:
        block = b"\0" * 65536
        with open(self.filler, "ab", buffering=0) as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(block)
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 512)
        st = os.statvfs(self.root)
        assert st.f_bavail * st.f_frsize < 4096, "the tmpfs is not full"

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    root = tmp_path / "state"
    if not _mount_tmpfs(root):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("a tmpfs is needed under CI=true (run as root)")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield Disk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Any, disk: Disk) -> Iterator[tuple[AgentProcess,
                                                                      AthenaSimProcess,
                                                                      PtyReader]]:
    sim = AthenaSimProcess(tmp_path)
    sim.start()
    reader = PtyReader()
    agent = AgentProcess(tmp_path, mosquitto.port, sim.info, reader.path)
    agent.athena_timeout_s = 3
    try:
        yield agent, sim, reader
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait()
        reader.close()
        sim.stop()


class WriteLock:
    """Another process holding the journal's write lock until ``release``."""

    def __init__(self, db: Path) -> None:
        code = ("import sqlite3,sys; c=sqlite3.connect(sys.argv[1], isolation_level=None);"
                "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(db)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()


async def ready(app: AppClient, agent: AgentProcess) -> None:
    await started(agent, app)
    await app.wait_retained("state", lambda s: s["reader"]["connected"], timeout=20)


async def start_charge(app: AppClient, job_id: str) -> dict[str, Any]:
    return await app.command("charge.start", job_id=job_id, patient_id=PATIENT, claims=CLAIMS)


async def until_state(app: AppClient, pred: Any, timeout: float = 20) -> dict[str, Any]:
    return await app.wait_retained("state", pred, timeout=timeout)


def journal_states(agent: AgentProcess, job_id: str) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{agent.state_dir / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute(
            "SELECT state FROM job_events WHERE job_id = ? ORDER BY seq", (job_id,))]
    finally:
        conn.close()


@pytest.mark.parametrize("fault", ["full", "locked"])
async def test_the_outcome_write_fails(rig: Any, disk: Disk, fault: str) -> None:
    """athena approves while the journal cannot be written: the approval is kept, the
    terminal is free at once, charge.get tells the truth, and the succeeded event is
    published once the disk takes it."""
    agent, sim, reader = rig
    async with AppClient(agent.broker_port, agent.terminal_id) as app:
        await ready(app, agent)
        rep = await start_charge(app, "j-1")
        assert rep["ok"], rep["error"]
        sim.fault(kind="slow", seconds=1.0, apply=True)  # approved, one second late
        reader.swipe(CANARY_TRACKS)
        await app.wait_event("j-1", "submitting")
        lock = None
        if fault == "full":
            disk.fill()
        else:
            lock = WriteLock(agent.state_dir / "journal.sqlite3")
        try:
            await until_state(app, lambda s: s["job_state"] == "idle")
            got = await app.command("charge.get", job_id="j-1")
            assert got["ok"] and got["job"]["state"] == "succeeded", got
            assert app.job_events("j-1")[-1]["state"] == "submitting"  # not published yet
            await asyncio.sleep(1.5)
            assert app.job_events("j-1")[-1]["state"] == "submitting"
        finally:
            disk.free()
            if lock is not None:
                lock.release()
        final = await app.wait_event("j-1", "succeeded", timeout=20)
        assert final["epayment_id"] == got["job"]["epayment_id"]
        assert len(sim.posts(PATIENT)) == 1
        # the terminal takes the next charge (another patient: j-1 paid this claim)
        nxt = await app.command("charge.start", job_id="j-2", patient_id="60181",
                                claims=[{"claim_id": "5590", "amount": "5.00"}])
        assert nxt["ok"] and nxt["state"] == "pending", nxt
        assert (await app.command("charge.cancel", job_id="j-2"))["ok"]
        assert agent.terminate() == 0
    assert journal_states(agent, "j-1") == ["pending", "card_read", "submitting", "succeeded"]


async def test_the_disk_is_full_before_the_swipe(rig: Any, disk: Disk) -> None:
    """card_read cannot be written: the card is not charged and the patient is asked to
    swipe again; with space back, the same job goes through."""
    agent, sim, reader = rig
    async with AppClient(agent.broker_port, agent.terminal_id) as app:
        await ready(app, agent)
        assert (await start_charge(app, "j-1"))["ok"]
        disk.fill()
        try:
            reader.swipe(CANARY_TRACKS)
            await until_state(app, lambda s: any("again" in line.lower()
                                                 for line in s["screen"]))
            assert sim.posts(PATIENT) == []
            st = await until_state(app, lambda s: True)
            assert st["job_state"] == "pending"
        finally:
            disk.free()
        reader.swipe(CANARY_TRACKS)
        await app.wait_event("j-1", "succeeded", timeout=20)
        assert len(sim.posts(PATIENT)) == 1
        assert agent.terminate() == 0


async def test_the_disk_is_full_at_charge_start(rig: Any, disk: Disk) -> None:
    agent, sim, reader = rig
    async with AppClient(agent.broker_port, agent.terminal_id) as app:
        await ready(app, agent)
        disk.fill()
        try:
            rep = await start_charge(app, "j-1")
            assert rep["ok"] is False and rep["error"]["code"] == "internal_error", rep
            st = await until_state(app, lambda s: True)
            assert st["job_state"] == "idle"
            got = await app.command("charge.get", job_id="j-1")
            assert got["error"]["code"] == "unknown_job"  # nothing was accepted
        finally:
            disk.free()
        rep = await start_charge(app, "j-1")
        assert rep["ok"] and rep["state"] == "pending", rep
        reader.swipe(CANARY_TRACKS)
        await app.wait_event("j-1", "succeeded", timeout=20)
        assert agent.terminate() == 0


async def test_the_disk_is_full_while_reconciling(rig: Any, disk: Disk) -> None:
    """The POST's answer is lost (the charge went through); the disk fills while the job
    is unknown: the reconcile verdict waits in memory for the disk, then is published."""
    agent, sim, reader = rig
    async with AppClient(agent.broker_port, agent.terminal_id) as app:
        await ready(app, agent)
        assert (await start_charge(app, "j-1"))["ok"]
        sim.fault(kind="drop", apply=True)
        reader.swipe(CANARY_TRACKS)
        await app.wait_event("j-1", "unknown", timeout=20)
        disk.fill()
        try:
            await asyncio.sleep(3)
            got = await app.command("charge.get", job_id="j-1")
            assert got["job"]["state"] in ("unknown", "succeeded"), got
            assert app.job_events("j-1")[-1]["state"] == "unknown"
        finally:
            disk.free()
        final = await app.wait_event("j-1", final=True, timeout=30)
        assert final["state"] == "succeeded", final
        assert len(sim.posts(PATIENT)) == 1
        assert agent.terminate() == 0
