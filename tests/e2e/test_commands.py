"""Every command and error code of protocol.md sections 2-4, end to end: the real agent
process, mosquitto, the athena simulator over HTTP and a pty reader. Only the contract is
used (MQTT messages, the simulator's /_sim/* control and recorded calls, the pty).

Each test ends by validating every agent message against the shipped schemas and by
checking that the canary PAN leaked nowhere.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.harness import (
    CANARY_TRACKS,
    AgentProcess,
    AppClient,
    AthenaSimProcess,
    PtyReader,
    assert_no_canary,
    started,
    validate_all,
    wait_until,
)

PATIENT = "60178"  # sim: 5569 clean 40.00, 5570 clean 25.50 (dept 2, same group),
#                    5571 not clean, 7001 other provider group; appointment 1001 copay 25.00


def athena_reads(sim: AthenaSimProcess) -> list[dict[str, Any]]:
    return [c for c in sim.calls() if c["endpoint"] in ("patient", "appointment", "receipts")]


def cmd(type_: str, rid: str = "r-x", **fields: Any) -> str:
    return json.dumps({"v": 1, "type": type_, "request_id": rid, **fields})


def start_body(job_id: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"job_id": job_id, "patient_id": PATIENT,
                            "claims": [{"claim_id": "5569", "amount": "10.00"}]}
    body.update(over)
    return body


def error_of(reply: dict[str, Any]) -> str:
    assert reply["ok"] is False, reply
    assert reply["error"]["message"], reply
    return str(reply["error"]["code"])


# (payload, expected request_id echo, expected command echo) -> bad_request
LONG_RID = "r" * 65
BAD_REQUESTS: list[tuple[str, bytes | str, str | None, str | None]] = [
    ("not JSON", b"{not json", None, None),
    ("not UTF-8", b"\xff\xfe{}", None, None),
    ("JSON array", b'[{"v":1,"type":"ping","request_id":"r"}]', None, None),
    ("JSON string", b'"ping"', None, None),
    ("JSON null", b"null", None, None),
    ("missing request_id", json.dumps({"v": 1, "type": "ping"}), None, "ping"),
    ("request_id too long", json.dumps({"v": 1, "type": "ping", "request_id": LONG_RID}),
     None, "ping"),
    ("request_id empty", json.dumps({"v": 1, "type": "ping", "request_id": ""}), None, "ping"),
    ("request_id a number", json.dumps({"v": 1, "type": "ping", "request_id": 7}), None, "ping"),
    ("missing v", json.dumps({"type": "ping", "request_id": "br-v"}), "br-v", "ping"),
    ("v 2", cmd("ping", "br-v2") .replace('"v": 1', '"v": 2'), "br-v2", "ping"),
    ("v a string", cmd("ping", "br-vs").replace('"v": 1', '"v": "1"'), "br-vs", "ping"),
    ("missing type", json.dumps({"v": 1, "request_id": "br-t"}), "br-t", None),
    ("type a number", json.dumps({"v": 1, "type": 5, "request_id": "br-tn"}), "br-tn", None),
    ("patient_id a number", cmd("balance.get", "br-p", patient_id=60178), "br-p", "balance.get"),
    ("patient_id missing", cmd("balance.get", "br-pm"), "br-pm", "balance.get"),
    ("patient_id path syntax", cmd("balance.get", "br-pp", patient_id="../1"), "br-pp",
     "balance.get"),
    ("claims not a list", cmd("charge.start", "br-c", **start_body("j-bad", claims="5569")),
     "br-c", "charge.start"),
    ("claim not an object", cmd("charge.start", "br-co", **start_body("j-bad", claims=["5569"])),
     "br-co", "charge.start"),
    ("allow_duplicate a string",
     cmd("charge.start", "br-ad", **start_body("j-bad", allow_duplicate="yes")),
     "br-ad", "charge.start"),
    ("deadline_s a string", cmd("charge.start", "br-ds", **start_body("j-bad", deadline_s="60")),
     "br-ds", "charge.start"),
    ("deadline_s a float", cmd("charge.start", "br-df", **start_body("j-bad", deadline_s=60.0)),
     "br-df", "charge.start"),
    ("deadline_s 9", cmd("charge.start", "br-d9", **start_body("j-bad", deadline_s=9)),
     "br-d9", "charge.start"),
    ("deadline_s 301", cmd("charge.start", "br-d301", **start_body("j-bad", deadline_s=301)),
     "br-d301", "charge.start"),
    ("expires_at not a time",
     cmd("charge.start", "br-ex", **start_body("j-bad", expires_at="tomorrow")),
     "br-ex", "charge.start"),
    ("job_id with a space", cmd("charge.start", "br-j1", **start_body("j 1")),
     "br-j1", "charge.start"),
    ("job_id with a slash", cmd("charge.start", "br-j2", **start_body("j/1")),
     "br-j2", "charge.start"),
    ("job_id non-ASCII", cmd("charge.start", "br-j3", **start_body("j\u00fc")),
     "br-j3", "charge.start"),
    ("job_id too long", cmd("charge.start", "br-j4", **start_body("j" * 65)),
     "br-j4", "charge.start"),
    ("job_id a number", cmd("charge.start", "br-j5", **start_body(7)), "br-j5", "charge.start"),
    ("job_id missing on cancel", cmd("charge.cancel", "br-j6"), "br-j6", "charge.cancel"),
    ("job_id bad on get", cmd("charge.get", "br-j7", job_id="a#b"), "br-j7", "charge.get"),
    ("duplicate claim",
     cmd("charge.start", "br-dup", **start_body("j-bad", claims=[
         {"claim_id": "5569", "amount": "10.00"}, {"claim_id": "5569", "amount": "5.00"}])),
     "br-dup", "charge.start"),
    ("limit 0", cmd("charge.list", "br-l0", limit=0), "br-l0", "charge.list"),
    ("limit -1", cmd("charge.list", "br-lneg", limit=-1), "br-lneg", "charge.list"),
    ("limit a string", cmd("charge.list", "br-ls", limit="5"), "br-ls", "charge.list"),
]


async def test_bad_requests_and_unknown_commands_change_nothing(
    agent: AgentProcess, athena_sim: AthenaSimProcess, mosquitto: Any
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)
        for name, payload, rid, command in BAD_REQUESTS:
            rep = await app.send_wait_next(payload)
            assert error_of(rep) == "bad_request", (name, rep)
            assert rep["request_id"] == rid, (name, rep)
            assert rep["command"] == command, (name, rep)
            assert rep["v"] == 1 and rep["type"] == "reply"

        rep = await app.send_wait_next(cmd("charge.refund", "uc-1", job_id="j-1"))
        assert error_of(rep) == "unknown_command"
        assert rep["request_id"] == "uc-1" and rep["command"] is None
        rep = await app.send_wait_next(cmd("", "uc-2"))
        assert error_of(rep) == "unknown_command" and rep["request_id"] == "uc-2"

        # unknown fields are ignored
        rep = await app.command("ping", request_id="p-extra", colour="blue")
        assert rep["ok"] is True and rep["state"]["job_state"] == "idle"

        # nothing changed: no job, no athena call, the terminal idle and answering
        listed = await app.command("charge.list")
        assert listed["ok"] and listed["jobs"] == []
        assert athena_reads(athena_sim) == [] and athena_sim.posts() == []
        assert (await app.command("ping"))["state"]["job_id"] is None
        assert agent.proc is not None and agent.proc.poll() is None
        validate_all(app)
    assert_no_canary(agent=agent, app=app)


INVALID_AMOUNTS: list[tuple[str, dict[str, Any]]] = [
    ("copay a number", {"copay": 25, "appointment_id": "1001", "claims": []}),
    ("copay a float", {"copay": 25.5, "appointment_id": "1001", "claims": []}),
    ("copay negative", {"copay": "-5.00", "appointment_id": "1001", "claims": []}),
    ("copay 3 decimals", {"copay": "5.001", "appointment_id": "1001", "claims": []}),
    ("copay 1 decimal", {"copay": "5.0", "appointment_id": "1001", "claims": []}),
    ("copay no decimals", {"copay": "5", "appointment_id": "1001", "claims": []}),
    ("copay NaN text", {"copay": "NaN", "appointment_id": "1001", "claims": []}),
    ("claim amount a number", {"claims": [{"claim_id": "5569", "amount": 10}]}),
    ("claim amount a float", {"claims": [{"claim_id": "5569", "amount": 10.25}]}),
    ("claim amount negative", {"claims": [{"claim_id": "5569", "amount": "-10.00"}]}),
    ("claim amount 3 decimals", {"claims": [{"claim_id": "5569", "amount": "10.001"}]}),
    ("claim amount zero", {"claims": [{"claim_id": "5569", "amount": "0.00"}]}),
    ("copay over max_charge", {"copay": "5000.01", "appointment_id": "1001", "claims": []}),
    ("total over max_charge", {"copay": "4999.00", "appointment_id": "1001",
                               "claims": [{"claim_id": "5569", "amount": "1.01"}]}),
]


async def test_charge_start_refusals(
    agent: AgentProcess, athena_sim: AthenaSimProcess, mosquitto: Any
) -> None:
    agent.athena_timeout_s = 1  # athena failing is answered within this
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)

        async def refused(rid: str, **body: Any) -> str:
            rep = await app.command("charge.start", request_id=rid, **body)
            assert rep["request_id"] == rid and rep["command"] == "charge.start"
            return error_of(rep)

        # amounts and static rules: refused before athena is asked anything
        for i, (name, over) in enumerate(INVALID_AMOUNTS):
            assert await refused(f"ia-{i}", **start_body(f"j-ia-{i}", **over)) == \
                "invalid_amount", name
        # a JSON NaN literal (Python's json accepts it) is not an amount either
        rep = await app.send_wait_next(
            '{"v":1,"type":"charge.start","request_id":"ia-nan","job_id":"j-nan",'
            '"patient_id":"60178","claims":[{"claim_id":"5569","amount":NaN}]}')
        assert error_of(rep) == "invalid_amount" and rep["request_id"] == "ia-nan"
        assert await refused("cna", **start_body("j-cna", copay="25.00", claims=[])) == \
            "copay_needs_appointment"
        assert await refused("ntc-1", **start_body("j-ntc", claims=[])) == "nothing_to_charge"
        assert await refused("ntc-2", **start_body("j-ntc", copay="0.00", appointment_id="1001",
                                                  claims=[])) == "nothing_to_charge"
        assert await refused("exp", **start_body("j-exp", expires_at="2020-01-01T00:00:00Z")) \
            == "expired"
        assert athena_reads(athena_sim) == []

        # rules that need athena's balances
        for rid, claim_id in (("cnc-unclean", "5571"), ("cnc-group", "7001"),
                              ("cnc-unknown", "99999")):
            body = start_body(f"j-{rid}", claims=[{"claim_id": claim_id, "amount": "5.00"}])
            assert await refused(rid, **body) == "claim_not_collectible", claim_id
        # one bad claim spoils the lot
        body = start_body("j-mixed", claims=[{"claim_id": "5569", "amount": "5.00"},
                                             {"claim_id": "5571", "amount": "5.00"}])
        assert await refused("cnc-mixed", **body) == "claim_not_collectible"
        body = start_body("j-aeb", claims=[{"claim_id": "5569", "amount": "40.01"}])
        assert await refused("aeb", **body) == "amount_exceeds_balance"
        assert await refused("pnf", **start_body("j-pnf", patient_id="99999")) == \
            "patient_not_found"
        rep = await app.command("balance.get", patient_id="99999")
        assert error_of(rep) == "patient_not_found"

        # athena answering 503 (the gateway) for the balance read
        athena_sim.fault(kind="status", endpoint="patient", status=503, count=50)
        assert await refused("au-503", **start_body("j-au")) == "athena_unavailable"
        assert error_of(await app.command("balance.get", patient_id=PATIENT)) == \
            "athena_unavailable"
        state = (await app.command("ping"))["state"]
        assert state["athena"]["last_error"] is not None
        athena_sim.control("/_sim/reset", {})

        # athena gone: answered within athena.timeout_s, nothing started
        athena_sim.stop()
        t0 = time.monotonic()
        assert await refused("au-down", **start_body("j-au")) == "athena_unavailable"
        assert time.monotonic() - t0 < agent.athena_timeout_s + 1.5
        assert error_of(await app.command("balance.get", patient_id=PATIENT)) == \
            "athena_unavailable"

        listed = await app.command("charge.list")
        assert listed["jobs"] == []
        state = (await app.command("ping"))["state"]
        assert state["job_state"] == "idle" and state["job_id"] is None
        validate_all(app)
    assert_no_canary(agent=agent, app=app)


async def test_job_commands_busy_idempotency_redelivery_cancel_deadline_list(
    agent: AgentProcess, athena_sim: AthenaSimProcess, pty_reader: PtyReader, mosquitto: Any
) -> None:
    async with AppClient(mosquitto.port, agent.terminal_id) as app:
        await started(agent, app)

        # ping: the same object as the retained state
        ping = await app.command("ping")
        assert ping["ok"] and ping["state"]["job_state"] == "idle"
        retained = await app.wait_retained("state", lambda s: True)
        assert ping["state"] == retained

        # balance.get redelivered: the same reply, athena read once
        payload = cmd("balance.get", "bal-1", patient_id=PATIENT)
        await app.send_raw(payload)
        first = await app.wait_reply("bal-1")
        assert first["ok"]
        reads_before = len(athena_reads(athena_sim))
        await app.send_raw(payload)
        await _wait_count(app, "bal-1", 2)
        assert len(set(app.replies_to("bal-1"))) == 1
        assert len(athena_reads(athena_sim)) == reads_before

        # j-1 waits for a card with the shortest deadline; the rest runs meanwhile
        body1 = start_body("j-1", deadline_s=10)
        t_start = time.monotonic()
        rep = await app.command("charge.start", request_id="s-1", **body1)
        assert rep["ok"] and rep["job_id"] == "j-1" and rep["state"] == "pending", rep
        st = await app.wait_retained("state", lambda s: s["job_state"] == "pending")
        assert st["job_id"] == "j-1" and any("10.00" in line for line in st["screen"])
        ping = await app.command("ping")
        assert ping["state"]["job_id"] == "j-1" and ping["state"]["job_state"] == "pending"

        busy = await app.command("charge.start", **start_body("j-2"))
        assert error_of(busy) == "terminal_busy" and busy["active_job_id"] == "j-1"

        same = await app.command("charge.start", request_id="s-1b", **body1)
        assert same["ok"] and same["job_id"] == "j-1" and same["state"] == "pending"
        other = await app.command("charge.start", **start_body(
            "j-1", deadline_s=10, claims=[{"claim_id": "5569", "amount": "11.00"}]))
        assert error_of(other) == "idempotency_conflict"

        # redelivery of the start itself: same reply bytes, one job, one pending event
        await app.send_raw(cmd("charge.start", "s-1", **body1))
        await _wait_count(app, "s-1", 2)
        assert len(set(app.replies_to("s-1"))) == 1

        expired = await app.wait_event("j-1", final=True, timeout=20)
        waited = time.monotonic() - t_start
        assert expired["state"] == "expired" and expired["error"]["code"] == "expired"
        assert 9.0 <= waited < 14, waited
        assert [e["state"] for e in app.job_events("j-1")] == ["pending", "expired"]
        await app.wait_retained("state", lambda s: s["job_state"] == "idle")

        assert error_of(await app.command("charge.cancel", job_id="j-1")) == "not_active"
        assert error_of(await app.command("charge.cancel", job_id="nope")) == "unknown_job"
        assert error_of(await app.command("charge.get", job_id="nope")) == "unknown_job"
        assert error_of(await app.command("charge.get", job_id="j-2")) == "unknown_job"

        # cancel while pending, the cancel redelivered: acted on once
        rep = await app.command("charge.start", **start_body("j-3"))
        assert rep["ok"], rep
        cancel = cmd("charge.cancel", "c-3", job_id="j-3")
        await app.send_raw(cancel)
        first = await app.wait_reply("c-3")
        assert first["ok"] and first["job_id"] == "j-3"
        canceled = await app.wait_event("j-3", final=True)
        assert canceled["state"] == "canceled" and canceled["error"]["code"]
        await app.send_raw(cancel)
        await _wait_count(app, "c-3", 2)
        assert len(set(app.replies_to("c-3"))) == 1
        assert [e["state"] for e in app.job_events("j-3")] == ["pending", "canceled"]
        assert error_of(await app.command("charge.cancel", job_id="j-3")) == "not_active"

        # too_late: the POST is in flight (slow athena); ping is answered meanwhile
        athena_sim.fault(kind="slow", seconds=1.5, apply=True)
        rep = await app.command("charge.start", **start_body("j-4"))
        assert rep["ok"], rep
        pty_reader.swipe(CANARY_TRACKS)
        await app.wait_event("j-4", "submitting")
        t0 = time.monotonic()
        assert error_of(await app.command("charge.cancel", job_id="j-4")) == "too_late"
        got = await app.command("charge.get", job_id="j-4")
        assert got["job"]["state"] == "submitting"
        assert (await app.command("ping"))["state"]["job_state"] == "submitting"
        assert time.monotonic() - t0 < 1.0, "commands waited on the POST"
        final = await app.wait_event("j-4", final=True)
        assert final["state"] == "succeeded" and final["epayment_id"], final
        assert len(athena_sim.posts(PATIENT)) == 1

        # the same job_id and body once more: its current state, nothing twice
        again = await app.command("charge.start", **start_body("j-4"))
        assert again["ok"] and again["state"] == "succeeded"
        assert len(athena_sim.posts(PATIENT)) == 1
        assert [e["state"] for e in app.job_events("j-4")] == [
            "pending", "card_read", "submitting", "succeeded"]

        # charge.list: newest first, each the job's latest event; limit
        listed = (await app.command("charge.list"))["jobs"]
        assert [(j["job_id"], j["state"]) for j in listed] == [
            ("j-4", "succeeded"), ("j-3", "canceled"), ("j-1", "expired")]
        assert listed[0] == (await app.command("charge.get", job_id="j-4"))["job"]
        assert listed[0] == final
        two = (await app.command("charge.list", limit=2))["jobs"]
        assert [j["job_id"] for j in two] == ["j-4", "j-3"]
        one = (await app.command("charge.list", limit=1))["jobs"]
        assert [j["job_id"] for j in one] == ["j-4"]
        capped = await app.command("charge.list", limit=500)  # "max 100": a cap
        assert capped["ok"] and [j["job_id"] for j in capped["jobs"]] == ["j-4", "j-3", "j-1"]
        validate_all(app)
    assert_no_canary(agent=agent, app=app)


async def _wait_count(app: AppClient, rid: str, n: int) -> None:
    try:
        await wait_until(lambda: len(app.replies_to(rid)) >= n, timeout=5, interval=0.02)
    except TimeoutError:
        pytest.fail(f"expected {n} replies to {rid}, saw {len(app.replies_to(rid))}")
