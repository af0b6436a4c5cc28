"""MQTT security with the shipped ACL (config/mosquitto-acl.example): a TLS-only broker
(test CA), a password per terminal and per app, the ACL file as shipped. The agent runs
with its own login over TLS and works; a client without credentials, with a wrong
password, or with ANOTHER terminal's login can neither command this terminal nor read
its traffic; an app cannot forge a terminal's events; monitoring can only read state."""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from tests.e2e.harness import ROOT
from tests.fakes.mosquitto import TlsFiles, make_tls_files, passwd_available
from tests.fakes.mqtt_client import MqttTestClient
from tests.proof.rig import PATIENT, Parts, Run, wait_dead

TID_A, TID_B = "lobby-a", "lobby-b"
APP, MONITOR, DESK = "checkin-app-1", "lobbypay-monitor", "frontdesk-1"
USERS = {TID_A: "pw-a-" + uuid.uuid4().hex, TID_B: "pw-b-" + uuid.uuid4().hex,
         APP: "pw-app-" + uuid.uuid4().hex, MONITOR: "pw-mon-" + uuid.uuid4().hex,
         DESK: "pw-desk-" + uuid.uuid4().hex}
ACL = ROOT / "config" / "mosquitto-acl.example"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[Parts]:
    if not passwd_available():
        pytest.skip("mosquitto_passwd not installed")
    root = tmp_path_factory.mktemp("secure")
    with Parts.up(root, users=USERS, tls=tls, extra_conf=f"acl_file {ACL}\n") as p:
        yield p


def ctx(tls: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls.ca))


def client(parts: Parts, tls: TlsFiles, user: str | None, password: str | None = None,
           **kw: object) -> MqttTestClient:
    return MqttTestClient("127.0.0.1", parts.broker.port, username=user,
                          password=password if password is not None else USERS.get(user or ""),
                          tls_context=ctx(tls), client_id=f"{user}-{uuid.uuid4().hex[:6]}",
                          **kw)  # type: ignore[arg-type]


def cmd(type_: str, **fields: object) -> tuple[str, dict[str, object]]:
    rid = uuid.uuid4().hex
    return rid, {"v": 1, "type": type_, "request_id": rid, **fields}


def secure_agent(secure: Parts, tls: TlsFiles, name: str, *, staff: bool = False) -> Run:
    """A run whose agent is terminal A, logged in over TLS with its own password."""
    run = secure.new_run(name)
    agent = run.agent
    agent.terminal_id = TID_A
    if staff:
        agent.extra_toml = "\n[staff]\nenabled = true\n"
    pwfile = run.dir / "mqtt-password"
    pwfile.write_text(USERS[TID_A] + "\n")
    agent.write_config()
    text = agent.config_path.read_text().replace(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {secure.broker.port}\n',
        f'[mqtt]\nhost = "127.0.0.1"\nport = {secure.broker.port}\ntls = true\n'
        f'ca_file = "{tls.ca}"\nusername = "{TID_A}"\npassword_file = "{pwfile}"\n')
    assert "tls = true" in text
    agent.config_path.write_text(text)
    return run


async def test_tls_acl_and_per_terminal_logins(secure: Parts, tls: TlsFiles) -> None:
    run = secure_agent(secure, tls, "secure")
    agent = run.agent
    a = f"lobbypay/v1/{TID_A}"
    try:
        async with client(secure, tls, APP) as app, \
                client(secure, tls, TID_B) as intruder, \
                client(secure, tls, MONITOR) as monitor:
            await app.subscribe(f"{a}/#")
            await intruder.subscribe(f"{a}/#")
            await intruder.subscribe("lobbypay/#")
            await monitor.subscribe(f"{a}/#")
            agent.start()
            # the agent connects with its own login over TLS and announces itself
            await app.wait_for(lambda m: m.topic == f"{a}/status" and m.json()["online"],
                               timeout=20)
            rid, body = cmd("ping")
            await app.publish(f"{a}/cmd", body)
            assert (await app.reply_to(rid, timeout=10))["ok"]

            # a charge works end to end under the ACL
            rid, body = cmd("charge.start", job_id="sec-1", patient_id=PATIENT,
                            claims=[{"claim_id": "5569", "amount": "8.01"}])
            await app.publish(f"{a}/cmd", body)
            assert (await app.reply_to(rid, timeout=15))["ok"]
            run.swipe()
            await app.wait_for(lambda m: m.topic == f"{a}/events" and m.json()["final"],
                               timeout=20)

            # another terminal's login: its commands never reach terminal A ...
            rid_b, body = cmd("charge.cancel", job_id="sec-1")
            await intruder.publish(f"{a}/cmd", body)
            rid_b2, body2 = cmd("charge.start", job_id="evil", patient_id=PATIENT,
                                claims=[{"claim_id": "5569", "amount": "9.99"}])
            await intruder.publish(f"{a}/cmd", body2)
            # ... nor can it forge A's events or status
            await intruder.publish(f"{a}/events", {"v": 1, "type": "charge.event",
                                                   "job_id": "sec-1", "state": "failed"})
            await intruder.publish(f"{a}/status", {"v": 1, "online": False}, retain=True)
            # an app cannot forge a terminal's output either
            await app.publish(f"{a}/events", {"v": 1, "type": "charge.event",
                                              "job_id": "forged", "state": "succeeded"})
            # the monitor cannot command
            rid_m, body_m = cmd("ping")
            await monitor.publish(f"{a}/cmd", body_m)
            # a marker from the app proves the agent kept answering meanwhile
            rid2, body = cmd("charge.list", limit=10)
            await app.publish(f"{a}/cmd", body)
            listed = await app.reply_to(rid2, timeout=10)
            await asyncio.sleep(1.0)
            assert [j["job_id"] for j in listed["jobs"]] == ["sec-1"]  # "evil" never started
            assert listed["jobs"][0]["state"] == "succeeded"  # the cancel did nothing
            replies = {json.loads(m.payload).get("request_id")
                       for m in app.messages if m.topic == f"{a}/reply"}
            assert not {rid_b, rid_b2, rid_m} & replies
            assert not any(m.topic == f"{a}/events" and m.json().get("job_id") == "forged"
                           for m in app.messages)
            assert not any(m.topic == f"{a}/events" and m.json().get("state") == "failed"
                           for m in app.messages)
            statuses = [m.json() for m in app.messages if m.topic == f"{a}/status"]
            assert all(s.get("session") for s in statuses)  # no forged status arrived
            # ... and it read nothing of terminal A's traffic
            assert intruder.messages == [], [m.topic for m in intruder.messages]
            # monitoring reads status and state, not replies or events
            mon_topics = {m.topic.rsplit("/", 1)[1] for m in monitor.messages}
            assert mon_topics and mon_topics <= {"status", "state"}, mon_topics
            assert agent.alive()
    finally:
        run.close()


async def test_the_kiosk_cannot_reach_the_staff_topic(secure: Parts, tls: TlsFiles) -> None:
    """Protocol 10 under the shipped ACL: the kiosk (check-in app) login can neither
    publish on staff/cmd nor read staff/reply, and charge.void on its own cmd topic is
    forbidden; the front-desk login voids the payment."""
    run = secure_agent(secure, tls, "staff", staff=True)
    agent = run.agent
    a = f"lobbypay/v1/{TID_A}"
    try:
        async with client(secure, tls, APP) as kiosk, client(secure, tls, DESK) as desk:
            await kiosk.subscribe(f"{a}/#")
            await desk.subscribe(f"{a}/#")
            agent.start()
            await kiosk.wait_for(lambda m: m.topic == f"{a}/status" and m.json()["online"],
                                 timeout=20)
            rid, body = cmd("charge.start", job_id="staff-1", patient_id=PATIENT,
                            claims=[{"claim_id": "5569", "amount": "8.02"}])
            await kiosk.publish(f"{a}/cmd", body)
            assert (await kiosk.reply_to(rid, timeout=15))["ok"]
            run.swipe()
            paid = await kiosk.wait_for(
                lambda m: m.topic == f"{a}/events" and m.json()["final"], timeout=20)
            assert paid.json()["state"] == "succeeded"

            # the kiosk on the staff topic: the broker drops it, the agent never sees it
            rid_k, body = cmd("charge.void", job_id="staff-1")
            await kiosk.publish(f"{a}/staff/cmd", body)
            # the kiosk on its own topic: forbidden
            rid_f, body = cmd("charge.void", job_id="staff-1")
            await kiosk.publish(f"{a}/cmd", body)
            forbidden = await kiosk.reply_to(rid_f, timeout=10)
            assert forbidden["error"]["code"] == "forbidden"
            # the front desk may not use the kiosk's topic either ...
            rid_d, body = cmd("ping")
            await desk.publish(f"{a}/cmd", body)
            # ... but its own staff topic voids the payment
            rid_v, body = cmd("charge.void", job_id="staff-1")
            await desk.publish(f"{a}/staff/cmd", body)
            voided = await desk.reply_to(rid_v, topic_suffix="/staff/reply", timeout=15)
            assert voided["ok"] and voided["state"] == "voided", voided
            await kiosk.wait_for(lambda m: m.topic == f"{a}/events"
                                 and m.json()["state"] == "voided", timeout=10)
            await asyncio.sleep(1.0)
            staff_topics = {m.topic for m in kiosk.messages if "/staff/" in m.topic}
            assert staff_topics == set(), staff_topics  # the kiosk read no staff traffic
            seen = {json.loads(m.payload).get("request_id")
                    for m in kiosk.messages + desk.messages if m.topic.endswith("reply")}
            assert rid_k not in seen and rid_d not in seen
            voids = [c for c in secure.sim.calls() if c["endpoint"] == "voidpayment"]
            assert len(voids) == 1  # the desk's void, not the kiosk's
            assert agent.alive()
    finally:
        run.close()


@pytest.mark.parametrize("who", ["anonymous", "wrong-password", "plaintext"])
async def test_without_valid_credentials_or_tls_nothing_connects(
        secure: Parts, tls: TlsFiles, who: str) -> None:
    with pytest.raises(aiomqtt.MqttError):
        if who == "anonymous":
            async with client(secure, tls, None, ""):
                pass
        elif who == "wrong-password":
            async with client(secure, tls, TID_A, "not-the-password"):
                pass
        else:
            c = aiomqtt.Client("127.0.0.1", secure.broker.port, username=APP,
                               password=USERS[APP], timeout=2)
            async with asyncio.timeout(15):
                async with c:
                    pass


async def test_the_agent_refuses_an_untrusted_broker(secure: Parts, tmp_path: Path) -> None:
    """The agent checks the broker's certificate: with another CA it never connects (and
    never sends its password), reports it in its log, and keeps running to retry."""
    other = make_tls_files(tmp_path / "other")
    run = secure.new_run("untrusted")
    agent = run.agent
    pwfile = run.dir / "mqtt-password"
    pwfile.write_text(USERS[TID_A] + "\n")
    agent.write_config()
    text = agent.config_path.read_text().replace(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {secure.broker.port}\n',
        f'[mqtt]\nhost = "127.0.0.1"\nport = {secure.broker.port}\ntls = true\n'
        f'ca_file = "{other.ca}"\nusername = "{TID_A}"\npassword_file = "{pwfile}"\n')
    agent.config_path.write_text(text)
    try:
        agent.start()
        assert not await wait_dead(agent, 4)  # still running, retrying
        logs = agent.logs()
        assert "mqtt connected" not in logs
        assert "CERTIFICATE_VERIFY_FAILED" in logs or "certificate" in logs.lower(), logs[-2000:]
        assert USERS[TID_A] not in logs
    finally:
        run.close()
