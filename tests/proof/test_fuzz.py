"""Fuzzing, CI size (the long run: `scripts/prove fuzz --cases 100000`).

* MQTT: mutated commands (types flipped, fields dropped, huge strings, deep nesting,
  invalid UTF-8, NaN, giant numbers, truncation) fired at a RUNNING agent; every payload
  gets a reply with ``ok: false`` and a documented code (never ``internal_error``), or
  ``ok: true`` when the mutation left it valid; then a real charge still works. Plus a
  Hypothesis property over arbitrary JSON field values.
* swipes: mutated track data and noise through the serial reader (pty) and the evdev
  decoder (fake device fed real evdev.InputEvent); the agent keeps reading.
* athena: garbage and wrong shapes on every endpoint the agent reads -> typed errors.
* config: mutated TOML -> `lobbypay check-config` exits 2 naming the key, no traceback.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.harness import CANARY_TRACKS, AppClient, subprocess_env
from tests.proof import fuzz
from tests.proof.rig import PATIENT, Parts, QuietApp, Run, wait_online

CASES = 2000


async def good_charge_works(app: AppClient, run: Run, job: str, amount: str) -> None:
    state = (await app.command("ping"))["state"]
    if state["job_id"] is not None:
        await app.command("charge.cancel", job_id=state["job_id"])
    rep = await app.command("charge.start", job_id=job, patient_id=PATIENT,
                            claims=[{"claim_id": "5569", "amount": amount}])
    assert rep["ok"], rep
    await app.wait_event(job, "pending")
    run.swipe(CANARY_TRACKS)
    final = await app.wait_event(job, final=True, timeout=20)
    assert final["state"] == "succeeded", final


async def test_mqtt_mutation_fuzz_against_the_running_agent(parts: Parts) -> None:
    run = parts.new_run("fuzz-mqtt")
    try:
        async with QuietApp(parts.broker.port, run.agent.terminal_id) as app:
            run.agent.start()
            await wait_online(app, 1)
            stats = await fuzz.fire(parts.broker.port, run.agent.terminal_id,
                                    fuzz.payloads(seed=1, n=CASES))
            print(json.dumps(fuzz.summary(stats)))
            assert stats.sent == CASES and stats.unanswered == 0, fuzz.summary(stats)
            assert stats.bad == [], fuzz.summary(stats)
            # the mix is real: most cases refused, several codes, some still valid
            assert stats.codes["bad_request"] > CASES / 3
            assert len(stats.codes) >= 5 and stats.ok_true > 0, fuzz.summary(stats)
            assert run.agent.alive()
            await good_charge_works(app, run, "after-fuzz", "2.01")
    finally:
        run.close()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12)


@st.composite
def commands(draw: Any) -> bytes:
    cmd = dict(draw(st.sampled_from(fuzz.SEEDS)))
    for key in draw(st.lists(st.sampled_from(sorted(cmd) + ["extra"]), max_size=3, unique=True)):
        cmd[key] = draw(JSON)
    return json.dumps(cmd, allow_nan=True).encode()


def test_mqtt_property_any_json_fields_get_a_documented_answer(parts: Parts) -> None:
    run = parts.new_run("fuzz-hyp")

    async def online() -> None:
        async with QuietApp(parts.broker.port, run.agent.terminal_id) as app:
            run.agent.start()
            await wait_online(app, 1)

    @settings(max_examples=25, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(commands(), min_size=1, max_size=40))
    def prop(batch: list[bytes]) -> None:
        stats = asyncio.run(fuzz.fire(parts.broker.port, run.agent.terminal_id, batch,
                                      timeout=15))
        assert stats.unanswered == 0 and stats.bad == [], fuzz.summary(stats)

    try:
        asyncio.run(online())
        prop()
        assert run.agent.alive()
    finally:
        run.close()


async def test_swipe_fuzz_through_the_serial_reader(parts: Parts) -> None:
    run = parts.new_run("fuzz-swipe")
    rng = random.Random(7)  # noqa: S311 - reproducible fuzzing
    try:
        async with QuietApp(parts.broker.port, run.agent.terminal_id) as app:
            run.agent.start()
            await wait_online(app, 1)
            for _ in range(400):  # no job: every swipe is read and dropped
                await run.feed(fuzz.mutate_swipe(rng))
            rep = await app.command("charge.start", job_id="sw", patient_id=PATIENT,
                                    claims=[{"claim_id": "5569", "amount": "3.01"}])
            assert rep["ok"], rep
            n = 0
            # with a job waiting: bad swipes leave it pending (a mutation that is still a
            # valid card would charge; stop there: that is correct behaviour)
            while n < 300 and [e["state"] for e in app.job_events("sw")] == ["pending"]:
                await run.feed(fuzz.mutate_swipe(rng))
                n += 1
                if n % 25 == 0:
                    await asyncio.sleep(0.05)
            # noise may have held an STX (a MagTek-wrapped frame only ETX or an idle gap
            # ends): the reader resyncs after its idle flush (1 s of silence)
            await asyncio.sleep(1.3)
            state = (await app.command("ping"))["state"]
            assert state["reader"]["connected"] is True
            assert run.agent.alive()
            await good_charge_works(app, run, "sw-after", "3.02")
    finally:
        run.close()


async def test_evdev_decoder_fuzz_with_real_input_events() -> None:
    from evdev import ecodes
    from lobbypay_hw import READERS
    from lobbypay_hw.api import CardRead, ReaderStatus, ReadFailed

    from tests.fakes.evdev import Clock, FakeInputDevice, FakeOpener, ev, typed
    from tests.fakes.pty import EventLog

    rng = random.Random(11)  # noqa: S311 - reproducible fuzzing
    dev = FakeInputDevice()
    log = EventLog()
    reader = READERS["evdev"](path=dev.path, grab=True, opener=FakeOpener(dev),
                              retry_base_s=0.02, retry_cap_s=0.1)
    task = asyncio.create_task(reader.run(log))
    clock = Clock()
    # caps lock is left out: the decoder keeps its toggle state like a keyboard does, so
    # an odd number of presses would (rightly) change what later swipes type; see
    # docs/RELIABILITY.md, "Findings"
    keys = [v for k, v in vars(ecodes).items()
            if k.startswith("KEY_") and isinstance(v, int) and v != ecodes.KEY_CAPSLOCK]
    try:
        await log.wait_for(lambda e: ReaderStatus(True) in e)
        for _ in range(300):
            events = []
            for _ in range(rng.randrange(1, 60)):
                kind = rng.randrange(4)
                if kind == 0:
                    events.append(ev(clock, ecodes.EV_KEY, rng.choice(keys), rng.choice((0, 1, 2))))
                elif kind == 1:
                    events.append(ev(clock, rng.choice((ecodes.EV_SYN, ecodes.EV_MSC, ecodes.EV_LED,
                                                        ecodes.EV_REL)), rng.randrange(16),
                                     rng.randrange(-5, 5)))
                else:
                    events.extend(typed(rng.choice(["%B4111", ";4111111111111111=30", "?", "^"]),
                                         clock, enter=None))
            events.extend(typed("", clock))
            dev.feed(events)
        # random presses may leave keys (a shift, a ctrl) down, as the device reported
        # them; release them all as a real device would, then a clean swipe must decode
        dev.feed([ev(clock, ecodes.EV_KEY, k, 0) for k in keys])
        # random EV_LED events may have left the caps lock LED lit, which the decoder
        # follows (readers compensate for it); the device turns it off again
        dev.feed([ev(clock, ecodes.EV_LED, ecodes.LED_CAPSL, 0)])
        dev.feed(typed(CANARY_TRACKS, clock))
        await log.wait_for(lambda e: any(isinstance(x, CardRead) for x in e), timeout_s=10)
        assert not task.done()
        assert reader.connected
        assert all(isinstance(x, CardRead | ReadFailed | ReaderStatus) for x in log.items)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


#: endpoint -> garbage athena could send; the agent must answer with a typed error
GARBAGE = ["[]", "{garbage", "null", '{"patients": 5}', '[{"balances": "x"}]', "\"\"",
           '[{"patientid": "60178", "balances": [{"balance": "NaN"}]}]', "1e999999"]


async def test_athena_garbage_on_every_endpoint_gives_typed_errors(parts: Parts) -> None:
    run = parts.new_run("fuzz-athena")
    sim = parts.sim
    try:
        async with QuietApp(parts.broker.port, run.agent.terminal_id) as app:
            run.agent.start()
            await wait_online(app, 1)
            for n, body in enumerate(GARBAGE):
                sim.fault(kind="body", endpoint="patient", body=body)
                rep = await app.command("balance.get", patient_id=PATIENT)
                # an object without claimbalancedetails is "nothing collectible we can
                # see" (docs/balance-rules.md 2.6): never money out of garbage
                assert (rep["ok"] and rep["collectible"] == []
                        and rep["collectible_total"] == "0.00") or (
                    not rep["ok"] and rep["error"]["code"] in (
                        "athena_bad_response", "patient_not_found", "athena_unavailable")), rep
                sim.fault(kind="body", endpoint="appointment", body=body)
                rep = await app.command("balance.get", patient_id=PATIENT, appointment_id="1001")
                # an object with no copay fields reads as "no copay expected" (finding in
                # docs/RELIABILITY.md); anything else is a typed error
                assert (rep["ok"] and rep["copay"] == {"expected": None}) or (
                    not rep["ok"] and rep["error"]["code"] in (
                        "athena_bad_response", "appointment_not_found", "athena_unavailable")), rep
                sim.fault(kind="body", endpoint="patient", body=body)
                rep = await app.command("charge.start", job_id=f"ga-{n}", patient_id=PATIENT,
                                        claims=[{"claim_id": "5569", "amount": "1.00"}])
                assert not rep["ok"] and rep["error"]["code"] in (
                    "athena_bad_response", "patient_not_found", "athena_unavailable",
                    "claim_not_collectible"), rep
                assert (await app.command("ping"))["ok"]
            # garbage from the token endpoint (twice: the client allows itself 5 token
            # requests a minute, athena's own lockout threshold)
            for body in ("{garbage", '{"access_token": 5}'):
                sim.fault(kind="body", endpoint="token", body=body, status=200)
                sim.fault(kind="expire_tokens")
                rep = await app.command("balance.get", patient_id=PATIENT)
                # the client may retry the token once and succeed; else a typed error
                assert rep["ok"] or rep["error"]["code"] in (
                    "athena_bad_response", "athena_unavailable"), rep
            # the POST answered with garbage: a typed event, never a crash
            for n, body in enumerate(GARBAGE[:4]):
                job = f"gp-{n}"
                rep = await app.command("charge.start", job_id=job, patient_id=PATIENT,
                                        claims=[{"claim_id": "5569", "amount": f"1.{n:02d}"}])
                assert rep["ok"], rep["error"]
                await app.wait_event(job, "pending")
                sim.fault(kind="body", endpoint="collectpayment", body=body)
                run.swipe()
                final = await app.wait_event(job, final=True, timeout=20)
                assert final["state"] in ("failed", "succeeded"), final
                assert final["error"] is None or final["error"]["code"] in fuzz.DOCUMENTED_CODES
            # receipts garbage while reconciling: retried, never a verdict from garbage
            job = "gr"
            assert (await app.command("charge.start", job_id=job, patient_id=PATIENT,
                                      claims=[{"claim_id": "5569", "amount": "1.50"}]))["ok"]
            await app.wait_event(job, "pending")
            sim.fault(kind="drop", apply=True)
            sim.fault(kind="body", endpoint="receipts", body="{garbage", count=3)
            run.swipe()
            final = await app.wait_event(job, final=True, timeout=30)
            assert final["state"] == "succeeded", final
            # the lost answer and the garbage stood as athena errors while they lasted...
            seen = [json.loads(p)["athena"]["last_error"] for t, p in app.seen
                    if t.endswith("/state")]
            assert any(e is not None and e["code"] == "outcome_unknown" for e in seen), seen
            # ...and the receipts read that found the payment worked: nothing stands now
            state = (await app.command("ping"))["state"]
            assert state["athena"]["last_error"] is None, state["athena"]
            assert run.agent.alive()
    finally:
        run.close()


def _good_config(tmp: Path) -> str:
    (tmp / "secret").write_text("s3cret\n")
    return f"""[terminal]
id = "lobby-1"
department_id = "1"
state_dir = "{tmp / 'state'}"
max_charge = "5000.00"

[athena]
base_url = "http://127.0.0.1:9"
practice_id = "195900"
client_id = "abc"
client_secret_file = "{tmp / 'secret'}"
timeout_s = 20
reconcile_settle_s = 120
rate_limit_rps = 5

[mqtt]
host = "127.0.0.1"
port = 1883
protocol = "5"
keepalive_s = 30

[reader]
driver = "serial"
path = "/dev/lobbypay-reader"
baudrate = 9600

[display]
driver = "none"
cols = 16
rows = 2

[logging]
level = "info"
"""


def test_mutated_config_files_exit_2_naming_the_key(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from lobbypay.cli import main

    good = _good_config(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(good)
    assert main(["check-config", "--config", str(cfg)]) == 0
    capsys.readouterr()
    rng = random.Random(3)  # noqa: S311 - reproducible fuzzing
    refused = accepted = 0
    for i in range(400):
        text, key = fuzz.mutate_toml(rng, good)
        cfg.write_text(text, errors="surrogateescape")
        try:
            code = main(["check-config", "--config", str(cfg)])
        except SystemExit as exc:
            code = exc.code  # type: ignore[assignment]
        out = capsys.readouterr()
        assert "Traceback" not in out.err + out.out, (i, text)
        if code == 0:
            accepted += 1  # a mutation that is still valid (e.g. another port)
            continue
        refused += 1
        assert code == 2, (i, code, out.err)
        assert out.err.startswith("lobbypay: invalid config"), out.err
        if key is not None:
            name = key.rsplit(".", 1)[1]
            assert name in out.err or "config key" in out.err, (key, out.err)
    assert refused > 200, (refused, accepted)
    # and through the real entry point, as systemd would start it
    for text in ("[terminal\n", "[terminal]\nid = 5\n"):
        cfg.write_text(text)
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "lobbypay", "run", "--config", str(cfg)],
                              env=subprocess_env(), capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "config" in proc.stderr and time.monotonic() - t0 < 10
