"""An encrypting reader on a real agent: a MagneSafe swipe (masked tracks, then the hex
ciphertext, MagnePrint, serial and KSN fields) on the serial reader's port keeps the job
pending, posts nothing to athena, puts ``encrypted_reader`` in ``state.reader`` and the
front-desk screen on the display, and none of its bytes reach MQTT, the logs or
state_dir. A clear swipe afterwards charges and clears the error."""

from __future__ import annotations

import asyncio

from tests.e2e.harness import AppClient
from tests.proof.rig import PATIENT, Parts, state_files, wait_online
from tests.proof.test_leaks import Sniffer

MASKED = "411111******1111"
ZERO_MASKED = "4111110000001111"
KSN = "9011880B0BB8E7000007"
CIPHER = "C1A4D8E6F2B3C5D7" * 6
MAGNESAFE = (f"%B{ZERO_MASKED}^SANDBOXTEST/JANE^3012000000000000000?"
             f";{ZERO_MASKED}=30120000000000000000?"
             f"|0600|{CIPHER}|{CIPHER[:48]}||61403000|{'A5' * 54}|B0D14A0C10128AA|{KSN}|")
SECUREMAG = f"%*4111********1111^SANDBOXTEST/JANE^*****?;{MASKED}=****?|{CIPHER}|{KSN}|"
SECRETS = (MASKED.encode(), ZERO_MASKED.encode(), KSN.encode(), CIPHER[:16].encode())


async def test_encrypting_reader_is_refused_end_to_end(parts: Parts) -> None:
    run = parts.new_run("encrypted")
    agent = run.agent
    try:
        async with Sniffer(parts.broker.port) as sniff, \
                AppClient(parts.broker.port, agent.terminal_id) as app:
            agent.start()
            await wait_online(app, 1)
            posts_before = len(parts.sim.posts(PATIENT))
            rep = await app.command("charge.start", job_id="enc", patient_id=PATIENT,
                                    claims=[{"claim_id": "5569", "amount": "1.11"}])
            assert rep["ok"], rep
            await app.wait_event("enc", "pending")
            for swipe in (MAGNESAFE, SECUREMAG):
                run.replug.port.write(swipe.encode() + b"\r")  # type: ignore[union-attr]
            st = await app.wait_retained(
                "state", lambda s: s["reader"].get("last_error") == "encrypted_reader")
            assert st["job_state"] == "pending"
            assert "1.11" in st["screen"][0] and st["screen"][1].strip() == "Pay at the desk"
            await asyncio.sleep(0.3)
            assert [e["state"] for e in app.job_events("enc")] == ["pending"]
            assert len(parts.sim.posts(PATIENT)) == posts_before  # nothing sent to athena
            run.swipe()  # a clear swipe: the charge goes ahead, the error clears
            final = await app.wait_event("enc", final=True, timeout=20)
            assert final["state"] == "succeeded"
            st = await app.wait_retained("state", lambda s: "last_error" not in s["reader"])
            assert agent.terminate() == 0
    finally:
        run.close()
    logs = agent.logs()
    assert "clear-text" in logs and "swipe rejected (encrypted_reader)" in logs
    blobs = [*sniff.seen, *app.seen, ("logs", logs.encode()), *state_files(agent.state_dir)]
    leaked = [name for name, data in blobs if any(s in data for s in SECRETS)]
    assert leaked == []
