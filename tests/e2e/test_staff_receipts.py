"""Protocol section 10 end to end: the staff topic and charge.void, receipt.email, and
the display's language. The real agent process, mosquitto, the athena simulator over HTTP
and a pty reader; only the contract is used (MQTT, the simulator's /_sim/* and its
recorded calls, the pty, the files under state_dir and the agent's log).

Every error code of section 10 is provoked here: forbidden, unknown_job, not_voidable,
void_rejected, athena_unavailable (void and email), no_receipt, athena_rejected, and
bad_request for each bad field.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from tests.e2e.harness import (
    CANARY_TRACKS,
    DECLINE_TRACKS,
    AgentProcess,
    AppClient,
    AthenaSimProcess,
    PtyReader,
    assert_no_canary,
    started,
    validate_all,
)

PATIENT = "60178"
STAFF = "\n[staff]\nenabled = true\n"
AGENT_TOPICS = ("/reply", "/events", "/status", "/state")


def error_of(reply: dict[str, Any]) -> str:
    assert reply["ok"] is False, reply
    assert reply["error"]["message"], reply
    return str(reply["error"]["code"])


def sim_calls(sim: AthenaSimProcess, endpoint: str) -> list[dict[str, Any]]:
    return [c for c in sim.calls() if c["endpoint"] == endpoint]


async def charge(app: AppClient, reader: PtyReader, job_id: str, *, tracks: str = CANARY_TRACKS,
                 amount: str = "10.00", claim: str = "5569", **extra: Any) -> dict[str, Any]:
    rep = await app.command("charge.start", job_id=job_id, patient_id=PATIENT,
                            claims=[{"claim_id": claim, "amount": amount}], **extra)
    assert rep["ok"], rep
    await app.wait_retained("state", lambda s: s["job_state"] == "pending")
    reader.swipe(tracks)
    return await app.wait_event(job_id, final=True)


def screen_text(state: dict[str, Any]) -> str:
    return " | ".join(line.strip() for line in state["screen"])


# ---------------------------------------------------------------- the void


async def test_void_on_the_staff_topic_once_and_after_a_restart(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    agent.extra_toml = STAFF
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        paid = await charge(app, pty_reader, "v-1")
        assert paid["state"] == "succeeded"

        # the patient's topic: forbidden, and nothing happens
        rid = uuid.uuid4().hex
        rep = await app.command("charge.void", job_id="v-1", request_id=rid)
        assert error_of(rep) == "forbidden"
        assert app.reply_topics(rid) == ["reply"]
        assert sim_calls(athena_sim, "voidpayment") == []
        assert (await app.command("charge.get", job_id="v-1"))["job"]["state"] == "succeeded"

        # the staff topic: voided, reply on staff/reply only
        rid = uuid.uuid4().hex
        rep = await app.staff_command("charge.void", job_id="v-1", request_id=rid)
        assert rep["ok"] is True and rep["job_id"] == "v-1" and rep["state"] == "voided", rep
        assert rep["command"] == "charge.void"
        assert app.reply_topics(rid) == ["staff/reply"]
        ev = await app.wait_event("v-1", "voided")
        assert ev["final"] is True and ev["seq"] == paid["seq"] + 1
        assert ev["card"] == paid["card"] and ev["amounts"] == paid["amounts"]
        assert ev["epayment_id"] == paid["epayment_id"] and ev["error"] is None
        (call,) = sim_calls(athena_sim, "voidpayment")
        assert call["path"].endswith(f"/patients/{PATIENT}/voidpayment/{paid['epayment_id']}")
        assert athena_sim.control("/_sim/calls")["voids"] == {paid["epayment_id"]: 1}

        # again: the same answer, no second athena call, no second event
        rep = await app.staff_command("charge.void", job_id="v-1")
        assert rep["ok"] is True and rep["state"] == "voided", rep
        assert len(sim_calls(athena_sim, "voidpayment")) == 1
        assert [e["state"] for e in app.job_events("v-1")].count("voided") == 1

        got = await app.command("charge.get", job_id="v-1")
        assert got["job"] == ev
        listed = await app.command("charge.list")
        assert listed["jobs"][0] == ev

        # a voided job has no receipt to email (docs/jobs.md: only succeeded jobs do)
        assert error_of(await app.command("receipt.email", job_id="v-1",
                                          email="jane@example.com")) == "no_receipt"

        # a retained message on staff/cmd is ignored, as on cmd (protocol 10 table)
        assert app._client is not None
        await app._client.publish(
            f"{app.prefix}/staff/cmd", json.dumps({"v": 1, "type": "ping",
                                                   "request_id": "retained-1"}),
            qos=1, retain=True)
        # the section 4 commands work on the staff topic too
        rid = uuid.uuid4().hex
        ping = await app.staff_command("ping", request_id=rid)
        assert ping["ok"] and ping["state"]["job_state"] == "idle"
        assert app.reply_topics(rid) == ["staff/reply"]

        assert agent.terminate() == 0
        await started(agent, app, session=2)
        got = await app.staff_command("charge.get", job_id="v-1")
        assert got["job"]["state"] == "voided" and got["job"]["seq"] == ev["seq"]
        listed = await app.staff_command("charge.list", limit=5)
        assert [j["state"] for j in listed["jobs"] if j["job_id"] == "v-1"] == ["voided"]
        rep = await app.staff_command("charge.void", job_id="v-1")
        assert rep["ok"] is True and rep["state"] == "voided"
        assert len(sim_calls(athena_sim, "voidpayment")) == 1
        assert "retained-1" not in app.replies  # neither live nor at the re-subscribe
        assert agent.terminate() == 0
        validate_all(app)
    assert_no_canary(agent=agent, app=app)


async def test_void_refusals_and_a_lost_answer(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    agent.extra_toml = STAFF
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        assert error_of(await app.staff_command("charge.void", job_id="never")) == "unknown_job"

        declined = await charge(app, pty_reader, "d-1", tracks=DECLINE_TRACKS)
        assert declined["state"] == "declined"
        rep = await app.staff_command("charge.void", job_id="d-1")
        assert error_of(rep) == "not_voidable" and "declined" in rep["error"]["message"]

        rep = await app.command("charge.start", job_id="p-1", patient_id=PATIENT,
                                claims=[{"claim_id": "5570", "amount": "5.00"}],
                                department_id="2")
        assert rep["ok"], rep
        rep = await app.staff_command("charge.void", job_id="p-1")
        assert error_of(rep) == "not_voidable" and "pending" in rep["error"]["message"]
        assert (await app.command("charge.cancel", job_id="p-1"))["ok"]
        await app.wait_event("p-1", "canceled")

        # athena refuses (the simulator's switch), then the nightly settlement has run
        paid = await charge(app, pty_reader, "v-2", amount="11.00")
        athena_sim.fault(kind="refuse_void")
        rep = await app.staff_command("charge.void", job_id="v-2")
        assert error_of(rep) == "void_rejected"
        assert "could not be voided" in rep["error"]["message"]
        athena_sim.control("/_sim/settle", {})
        rep = await app.staff_command("charge.void", job_id="v-2")
        assert error_of(rep) == "void_rejected" and "settled" in rep["error"]["message"]
        assert (await app.command("charge.get", job_id="v-2"))["job"]["state"] == "succeeded"

        # the answer is lost after athena voided: athena_unavailable, and sending it
        # again is safe (voided once at athena, one voided event)
        paid = await charge(app, pty_reader, "v-3", amount="12.00")
        athena_sim.fault(kind="status", endpoint="voidpayment", status=502, apply=True)
        rep = await app.staff_command("charge.void", job_id="v-3")
        assert error_of(rep) == "athena_unavailable"
        assert (await app.command("charge.get", job_id="v-3"))["job"]["state"] == "succeeded"
        rep = await app.staff_command("charge.void", job_id="v-3")
        assert rep["ok"] and rep["state"] == "voided", rep
        assert athena_sim.control("/_sim/calls")["voids"] == {paid["epayment_id"]: 1}
        await app.wait_event("v-3", "voided")
        assert [e["state"] for e in app.job_events("v-3")].count("voided") == 1

        # athena unreachable before anything was sent: athena_unavailable too
        paid = await charge(app, pty_reader, "v-4", amount="13.00")
        athena_sim.fault(kind="status", endpoint="voidpayment", status=503)
        assert error_of(await app.staff_command("charge.void", job_id="v-4")) == \
            "athena_unavailable"
        assert (await app.command("charge.get", job_id="v-4"))["job"]["state"] == "succeeded"
        assert agent.terminate() == 0
        validate_all(app)
    assert_no_canary(agent=agent, app=app)


async def test_staff_topic_is_not_subscribed_unless_enabled(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        paid = await charge(app, pty_reader, "v-5")
        with pytest.raises(TimeoutError):
            await app.staff_command("charge.void", job_id="v-5", timeout=2)
        with pytest.raises(TimeoutError):
            await app.staff_command("ping", timeout=1)
        assert error_of(await app.command("charge.void", job_id="v-5")) == "forbidden"
        # forbidden before the fields are read: the kiosk learns nothing about them
        assert error_of(await app.command("charge.void")) == "forbidden"
        assert error_of(await app.command("charge.void", job_id="bad id")) == "forbidden"
        assert sim_calls(athena_sim, "voidpayment") == []
        assert (await app.command("charge.get", job_id="v-5"))["job"] == paid
        assert agent.terminate() == 0


# ---------------------------------------------------------------- the emailed receipt

BAD_EMAILS: list[tuple[str, Any]] = [
    ("missing", None),
    ("a number", 42),
    ("a list", ["jane@example.com"]),
    ("empty", ""),
    ("too short", "a@"),
    ("255 characters", "j" * 243 + "@example.com"),
    ("no @", "jane.example.com"),
    ("two @", "jane@doe@example.com"),
    ("nothing before @", "@example.com"),
    ("nothing after @", "jane@"),
    ("a space", "jane doe@example.com"),
    ("a tab", "jane\t@example.com"),
    ("a newline", "jane@example.com\n"),
    ("a control character", "jane\x01@example.com"),
    ("a no-break space", "jane\u00a0@example.com"),
]


async def test_receipt_email_codes_and_the_address_is_kept_nowhere(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    canary_local = f"canary{uuid.uuid4().hex[:10]}"
    address = f"{canary_local}@example.org"
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        paid = await charge(app, pty_reader, "e-1")

        for what, bad in BAD_EMAILS:
            fields: dict[str, Any] = {"job_id": "e-1"}
            if bad is not None:
                fields["email"] = bad
            rep = await app.command("receipt.email", **fields)
            assert error_of(rep) == "bad_request", what
            if isinstance(bad, str) and len(bad) > 3:
                assert bad not in rep["error"]["message"], what
        for bad_job in (None, "", "has space", 7):
            fields = {"email": address}
            if bad_job is not None:
                fields["job_id"] = bad_job
            assert error_of(await app.command("receipt.email", **fields)) == "bad_request"
        # 254 characters is still an address
        longest = "j" * 242 + "@example.com"
        assert len(longest) == 254
        assert (await app.command("receipt.email", job_id="e-1", email=longest))["ok"]

        assert error_of(await app.command("receipt.email", job_id="never",
                                          email=address)) == "unknown_job"
        declined = await charge(app, pty_reader, "e-2", tracks=DECLINE_TRACKS, amount="9.00")
        assert declined["state"] == "declined"
        rep = await app.command("receipt.email", job_id="e-2", email=address)
        assert error_of(rep) == "no_receipt" and "declined" in rep["error"]["message"]

        # athena refuses an address it does not take (the simulator wants a dotted domain)
        rep = await app.command("receipt.email", job_id="e-1", email=f"{canary_local}@localhost")
        assert error_of(rep) == "athena_rejected"
        athena_sim.fault(kind="status", endpoint="receiptemail", status=503)
        rep = await app.command("receipt.email", job_id="e-1", email=address)
        assert error_of(rep) == "athena_unavailable"

        rep = await app.command("receipt.email", job_id="e-1", email=address)
        assert rep == {"v": 1, "type": "reply", "request_id": rep["request_id"],
                       "command": "receipt.email", "ok": True, "job_id": "e-1"}
        sent = athena_sim.control("/_sim/emails")["emails"]
        assert {"epaymentid": paid["epayment_id"], "email": address} in sent
        (call,) = [c for c in sim_calls(athena_sim, "receiptemail")
                   if c["form"].get("email") == "c***@example.org"][-1:]
        assert call["path"].endswith(f"/patients/{PATIENT}/receipts/{paid['epayment_id']}/email")
        # the job is unchanged by it
        assert (await app.command("charge.get", job_id="e-1"))["job"] == paid
        assert agent.terminate() == 0
        validate_all(app)

    needles = [address.encode(), canary_local.encode()]
    logs = agent.logs()
    assert "c***@example.org" in logs  # the log line shows it masked ...
    for n in needles:  # ... and never whole, nor in any file, nor in what the agent sent
        assert n not in logs.encode(), "email address in the agent's log"
        for path, data in agent.files_bytes():
            assert n not in data, f"email address in {path}"
        for topic, payload in app.seen:
            if topic.endswith(AGENT_TOPICS):
                assert n not in payload, f"email address on {topic}"
    assert agent.state_dir.is_dir() and agent.files_bytes()
    assert_no_canary(agent=agent, app=app)


# ---------------------------------------------------------------- Spanish on the screen


async def test_a_spanish_job_speaks_spanish_and_the_terminal_stays_english(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        idle = await app.wait_retained("state", lambda s: s["job_state"] == "idle")
        assert "Welcome" in screen_text(idle)
        for bad in ("fr", "ES", "", 1, ["es"]):
            rep = await app.command("charge.start", job_id="s-bad", patient_id=PATIENT,
                                    claims=[{"claim_id": "5569", "amount": "5.00"}],
                                    language=bad)
            assert error_of(rep) == "bad_request", bad
        assert error_of(await app.command("charge.get", job_id="s-bad")) == "unknown_job"

        rep = await app.command("charge.start", job_id="s-1", patient_id=PATIENT,
                                claims=[{"claim_id": "5569", "amount": "15.00"}],
                                language="es")
        assert rep["ok"], rep
        st = await app.wait_retained("state", lambda s: s["job_state"] == "pending")
        assert "15.00" in screen_text(st) and "Pase su tarjeta" in screen_text(st)
        pty_reader.swipe("%Bgarbage?")
        st = await app.wait_retained("state", lambda s: "Vuelva a pasarla" in screen_text(s))
        assert "15.00" in screen_text(st)
        pty_reader.swipe(CANARY_TRACKS)
        await app.wait_event("s-1", final=True)
        st = await app.wait_retained("state", lambda s: "Aprobado" in screen_text(s))
        assert "1111" in screen_text(st)

        # the next job names no language: the terminal's (English)
        rep = await app.command("charge.start", job_id="s-2", patient_id=PATIENT,
                                claims=[{"claim_id": "5569", "amount": "5.00"}])
        st = await app.wait_retained("state", lambda s: s["job_id"] == "s-2")
        assert "Please swipe" in screen_text(st)
        assert (await app.command("charge.cancel", job_id="s-2"))["ok"]
        await app.wait_retained("state", lambda s: "Payment canceled" in screen_text(s))
        assert agent.terminate() == 0
        validate_all(app)
    assert_no_canary(agent=agent, app=app)


async def test_terminal_language_spanish_between_jobs_and_by_default(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    agent.terminal_toml = 'language = "es"'
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        await app.wait_retained("state", lambda s: "Bienvenidos" in screen_text(s))
        rep = await app.command("charge.start", job_id="t-1", patient_id=PATIENT,
                                claims=[{"claim_id": "5569", "amount": "5.00"}])
        assert rep["ok"], rep
        await app.wait_retained("state", lambda s: "Pase su tarjeta" in screen_text(s))
        assert (await app.command("charge.cancel", job_id="t-1"))["ok"]
        await app.wait_retained("state", lambda s: "Pago cancelado" in screen_text(s))
        rep = await app.command("charge.start", job_id="t-2", patient_id=PATIENT,
                                claims=[{"claim_id": "5569", "amount": "6.00"}],
                                language="en")
        await app.wait_retained("state", lambda s: "Please swipe" in screen_text(s))
        pty_reader.swipe(DECLINE_TRACKS)
        await app.wait_event("t-2", final=True)
        await app.wait_retained("state", lambda s: "Card declined" in screen_text(s))
        assert agent.terminate() == 0


async def test_an_unknown_terminal_language_stops_the_agent_naming_the_key(
    agent: AgentProcess, mosquitto: Any
) -> None:
    agent.terminal_toml = 'language = "fr"'
    agent.start()
    assert agent.proc is not None
    rc = await asyncio.to_thread(agent.proc.wait, 30)
    assert rc != 0
    assert "terminal.language" in agent.logs()


def test_bad_request_list_covers_every_email_rule() -> None:
    """The table above is the contract's rule list, one bad value per rule."""
    whats = {w for w, _ in BAD_EMAILS}
    assert {"missing", "too short", "255 characters", "no @", "two @", "nothing before @",
            "nothing after @", "a space", "a control character"} <= whats
    assert json.dumps([b for _, b in BAD_EMAILS])  # all JSON-encodable


# ---------------------------------------------------------------- the Python client


async def test_client_void_email_receipt_and_language(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    from lobbypay.client import CommandError, TerminalClient

    agent.extra_toml = STAFF
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        async with TerminalClient(agent.terminal_id, "127.0.0.1", mosquitto.port) as kiosk, \
                TerminalClient(agent.terminal_id, "127.0.0.1", mosquitto.port,
                               staff=True) as desk:
            with pytest.raises(ValueError):
                await kiosk.charge("c-0", PATIENT, claims=[("5569", "5.00")], language="fr")
            start = await kiosk.charge("c-1", PATIENT, claims=[("5569", "14.00")],
                                       language="es")
            assert start["state"] == "pending"
            st = await app.wait_retained("state", lambda s: s["job_id"] == "c-1")
            assert "Pase su tarjeta" in screen_text(st)
            pty_reader.swipe(CANARY_TRACKS)
            final = await kiosk.wait_final("c-1", timeout=20)
            assert final["state"] == "succeeded"

            for bad in ("jane", "a b@c.d", "j@d@e"):
                with pytest.raises(ValueError) as ei:
                    await kiosk.email_receipt("c-1", bad)
                assert bad not in str(ei.value)
            assert (await kiosk.email_receipt("c-1", "jane@example.com"))["job_id"] == "c-1"

            with pytest.raises(CommandError) as ce:
                await kiosk.void("c-1")
            assert ce.value.code == "forbidden"
            voided = await desk.void("c-1")
            assert voided["state"] == "voided" and voided["command"] == "charge.void"
            assert (await desk.void("c-1"))["state"] == "voided"
            assert (await desk.get("c-1"))["state"] == "voided"
            with pytest.raises(CommandError) as ce:
                await desk.email_receipt("c-1", "jane@example.com")
            assert ce.value.code == "no_receipt"
            with pytest.raises(CommandError) as ce:
                await desk.void("never-seen")
            assert ce.value.code == "unknown_job"
        assert len(sim_calls(athena_sim, "voidpayment")) == 1
        assert agent.terminate() == 0
    assert_no_canary(agent=agent, app=app)


async def test_staff_reply_also_goes_to_the_mqtt5_response_topic(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    from tests.fakes.mqtt_client import MqttTestClient

    agent.extra_toml = STAFF
    inbox = f"apps/frontdesk-{uuid.uuid4().hex[:6]}/inbox"
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        paid = await charge(app, pty_reader, "rt-1")
        async with MqttTestClient("127.0.0.1", mosquitto.port, protocol="5",
                                  client_id=f"desk5-{uuid.uuid4().hex[:6]}") as desk:
            await desk.subscribe(inbox)
            # two voids at once: both answered voided, one athena call, one event
            for rid in ("rt-v1", "rt-v2"):
                await desk.publish(f"{app.prefix}/staff/cmd",
                                   {"v": 1, "type": "charge.void", "request_id": rid,
                                    "job_id": "rt-1"},
                                   response_topic=inbox, correlation_data=rid.encode())
            for rid in ("rt-v1", "rt-v2"):
                on_inbox = await desk.reply_to(rid, topic_suffix="/inbox", timeout=10)
                assert on_inbox["ok"] and on_inbox["state"] == "voided", on_inbox
                assert await app.wait_reply(rid) == on_inbox
                assert app.reply_topics(rid) == ["staff/reply"]
            corr = {m.correlation_data for m in desk.messages if m.topic == inbox}
            assert corr == {b"rt-v1", b"rt-v2"}
        await app.wait_event("rt-1", "voided")
        assert len(sim_calls(athena_sim, "voidpayment")) == 1
        assert [e["state"] for e in app.job_events("rt-1")] == [
            "pending", "card_read", "submitting", "succeeded", "voided"]
        assert app.job_events("rt-1")[-1]["epayment_id"] == paid["epayment_id"]
        assert agent.terminate() == 0
        validate_all(app)


async def test_a_crash_after_the_void_is_journaled_loses_nothing(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed (SIGKILL at ``after_void_journal``) between journaling the void and
    answering: after the restart the job is voided, its event is published from the
    outbox, and a second charge.void answers voided without calling athena again."""
    agent.extra_toml = STAFF
    monkeypatch.setenv("LOBBYPAY_TEST_MODE", "1")
    monkeypatch.setenv("LOBBYPAY_FAILPOINTS", "after_void_journal")
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        paid = await charge(app, pty_reader, "cr-1")
        with pytest.raises(TimeoutError):
            await app.staff_command("charge.void", job_id="cr-1", timeout=5)
        assert agent.proc is not None
        assert await asyncio.to_thread(agent.proc.wait, 10) == -9
        assert len(sim_calls(athena_sim, "voidpayment")) == 1
        monkeypatch.delenv("LOBBYPAY_FAILPOINTS")
        await started(agent, app, session=2)
        ev = await app.wait_event("cr-1", "voided")
        assert ev["seq"] == paid["seq"] + 1 and ev["epayment_id"] == paid["epayment_id"]
        assert (await app.command("charge.get", job_id="cr-1"))["job"]["state"] == "voided"
        rep = await app.staff_command("charge.void", job_id="cr-1")
        assert rep["ok"] and rep["state"] == "voided"
        assert len(sim_calls(athena_sim, "voidpayment")) == 1
        assert agent.terminate() == 0
    assert_no_canary(agent=agent, app=app)
