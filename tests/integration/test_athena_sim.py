"""The athena simulator itself: its rules, fixtures, faults and CLI, over raw HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from lobbypay.core.athena import parse_eastern_datetime, parse_receipts
from lobbypay.core.money import parse_athena_amount
from lobbypay.sim.athena import AthenaSim, iter_fixture_patients

CANARY_PAN = "4111111111111111"
ROOT = Path(__file__).resolve().parents[2]


def track(pan: str = CANARY_PAN, exp: str = "3012") -> str:
    return f"%B{pan}^SANDBOXTEST/GARY^{exp}1010000000000?;{pan}={exp}1010000000000?"


@pytest.fixture
def sim() -> Iterator[AthenaSim]:
    with AthenaSim() as s:
        yield s


@pytest.fixture
def http(sim: AthenaSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=5) as client:
        resp = client.post(
            "/oauth2/v1/token",
            auth=(sim.client_id, sim.client_secret),
            data={"grant_type": "client_credentials", "scope": "athena/service/Athenanet.MDP.*"},
        )
        assert resp.status_code == 200
        client.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
        yield client


def pay(http: httpx.Client, patient: str, practice: str = "195900", **form: str) -> httpx.Response:
    form.setdefault("departmentid", "1")
    form.setdefault("trackdata", track())
    return http.post(f"/v1/{practice}/patients/{patient}/collectpayment", data=form)


def patient(
    http: httpx.Client, pid: str, dept: str = "1", practice: str = "195900", **q: str
) -> dict[str, Any]:
    resp = http.get(
        f"/v1/{practice}/patients/{pid}",
        params={"showbalancedetails": "true", "departmentid": dept, **q},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body, list) and len(body) == 1
    result: dict[str, Any] = body[0]
    return result


# ---------------------------------------------------------------- auth


def test_token_endpoint_checks_credentials(sim: AthenaSim) -> None:
    with httpx.Client(base_url=sim.base_url) as c:
        ok = c.post(
            "/oauth2/v1/token",
            auth=(sim.client_id, sim.client_secret),
            data={"grant_type": "client_credentials"},
        )
        assert ok.status_code == 200
        assert ok.json()["token_type"] == "Bearer"  # noqa: S105
        assert ok.json()["expires_in"] == 3600
        assert (
            c.post(
                "/oauth2/v1/token",
                auth=(sim.client_id, "nope"),
                data={"grant_type": "client_credentials"},
            ).status_code
            == 401
        )
        assert (
            c.post("/oauth2/v1/token", data={"grant_type": "client_credentials"}).status_code == 401
        )
        assert (
            c.post(
                "/oauth2/v1/token",
                auth=(sim.client_id, sim.client_secret),
                data={"grant_type": "password"},
            ).status_code
            == 400
        )
        assert c.get("/v1/195900/ping").status_code == 401
        assert (
            c.get("/v1/195900/ping", headers={"Authorization": "Bearer made-up"}).status_code == 401
        )
    assert sim.token_requests == 4


def test_tokens_expire() -> None:
    with AthenaSim(token_ttl_s=1) as short:
        with httpx.Client(base_url=short.base_url) as c:
            tok = c.post(
                "/oauth2/v1/token",
                auth=(short.client_id, short.client_secret),
                data={"grant_type": "client_credentials"},
            ).json()
            assert tok["expires_in"] == 1
            hdr = {"Authorization": f"Bearer {tok['access_token']}"}
            assert c.get("/v1/195900/ping", headers=hdr).json() == {"pong": "true"}
            time.sleep(1.1)
            assert c.get("/v1/195900/ping", headers=hdr).status_code == 401


# ---------------------------------------------------------------- fixtures


def test_every_fixture_patient_is_readable(http: httpx.Client) -> None:
    seen = 0
    for practice, pid in iter_fixture_patients():
        dept = "1"
        p = patient(http, pid, dept, practice)
        assert p["patientid"] == pid
        assert "balances" in p
        seen += 1
    assert seen == 9


def test_enterprise_patient_groups_and_clean_flags(http: httpx.Client) -> None:
    p = patient(http, "60178")
    groups = {g["providergroupid"]: g for g in p["claimbalancedetails"]}
    assert set(groups) == {10, 20}
    assert groups[10]["departmentids"] == "1,2"
    assert groups[20]["departmentids"] == "5,7"
    claims = {c["claimid"]: c for c in groups[10]["claimdetails"]}
    assert claims[5569]["cleanbalance"] is True and claims[5569]["patientbalance"] == 40.0
    assert claims[5571]["cleanbalance"] is False
    assert [c["claimid"] for c in groups[20]["claimdetails"]] == [7001]


def test_strings_variant_uses_outstandingp(http: httpx.Client) -> None:
    p = patient(http, "60181")
    (group,) = p["claimbalancedetails"]
    claim = group["claimdetails"][0]
    assert claim["claimid"] == "5590" and claim["outstandingp"] == "35.00"
    assert "patientbalance" not in claim
    assert group["providergroupid"] == "10"
    assert claim["chargeleveldetail"][0]["fromdate"] == "07/01/2026"


def test_no_claimbalancedetails_and_credit_and_copay_only(http: httpx.Client) -> None:
    assert "claimbalancedetails" not in patient(http, "60182")
    assert patient(http, "60182")["balances"][0]["balance"] == "80.00"
    credit = patient(http, "60180")
    assert credit["balances"][0]["balance"] == "-25.15"
    assert credit["claimbalancedetails"] == []  # the paid claim only shows with showallclaims
    shown = patient(http, "60180", showallclaims="true")["claimbalancedetails"][0]["claimdetails"]
    assert shown[0]["patientbalance"] == 0.0
    only_copay = patient(http, "60179")
    assert only_copay["claimbalancedetails"] == [] and only_copay["balances"] == []
    appt = http.get("/v1/195900/appointments/1002").json()
    assert appt[0]["copay"]["insurancecopay"] == 30.0


def test_non_enterprise_practice(http: httpx.Client) -> None:
    p = patient(http, "70001", "3", "195901")
    (group,) = p["claimbalancedetails"]
    assert group["providergroupid"] == ""
    assert group["departmentids"] == "1,3"
    deps = http.get("/v1/195901/departments").json()["departments"]
    assert {d["providergroupid"] for d in deps} == {"1"}


def test_unknown_ids(http: httpx.Client) -> None:
    r = http.get("/v1/195900/patients/99999")
    assert r.status_code == 404 and "error" in r.json()
    assert http.get("/v1/195900/appointments/5").status_code == 404
    assert http.get("/v1/195900/nothing").status_code == 404
    assert http.get("/v1/999/ping").status_code == 404


# ---------------------------------------------------------------- collectpayment rules


def test_approval_lowers_balances_and_makes_a_receipt(sim: AthenaSim, http: httpx.Client) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    r = pay(
        http,
        "60178",
        copayamount="25.00",
        appointmentid="1001",
        otheramount="65.50",
        claimpayment=json.dumps([{"5569": "40.00"}, {"5570": "25.50"}]),
    )
    assert r.status_code == 200
    assert r.json() == [{"success": "true", "epaymentid": 90001, "errortext": ""}]
    assert sim.claim_balance("5569") == "0.00" and sim.claim_balance("5570") == "0.00"
    appt = http.get("/v1/195900/appointments/1001").json()[0]
    assert appt["copay"]["collectedforappointment"] == 25.0
    claims = patient(http, "60178", showallclaims="true")["claimbalancedetails"][0]["claimdetails"]
    paid = next(c for c in claims if c["claimid"] == 5569)
    (txn,) = paid["chargeleveldetail"][0]["transactions"]
    assert txn["epaymentid"] == 90001 and txn["amount"] == -40.0
    body = http.get("/v1/195900/patients/60178/receipts", params={"departmentid": "1"}).json()
    newest = next(r for r in body["receipts"] if r["epaymentid"] == 90001)
    assert newest["amount"] == 90.5 and newest["cardnumberlast4digits"] == "1111"
    assert newest["cardtypeabbreviation"] == "VI"
    # requestdate is US Eastern wall-clock text
    assert len(newest["requestdate"]) == 19 and newest["requestdate"][2] == "/"
    assert parse_eastern_datetime(newest["requestdate"]) >= before
    assert [x.epayment_id for x in parse_receipts(body)][-1] == "90001"


def test_strings_patient_gets_string_epaymentid(http: httpx.Client) -> None:
    r = pay(http, "60181", otheramount="35.00", claimpayment=json.dumps([{"5590": "35.00"}]))
    assert r.json()[0]["epaymentid"] == "90001"
    receipts = http.get("/v1/195900/patients/60181/receipts", params={"departmentid": "1"}).json()
    assert receipts["receipts"][0]["amount"] == "35.00"


@pytest.mark.parametrize(
    ("form", "error", "missing"),
    [
        ({"departmentid": "", "otheramount": "1.00"}, "Missing parameters.", ["departmentid"]),
        ({"departmentid": "42", "otheramount": "1.00"}, "Invalid departmentid.", None),
        ({"trackdata": "", "otheramount": "1.00"}, "Missing parameters.", None),
        ({"trackdata": CANARY_PAN, "otheramount": "1.00"}, "Invalid track data.", None),
        ({"trackdata": track(), "ecommercemode": "true", "otheramount": "1.00"}, None, None),
        ({"copayamount": "25.00"}, "Missing parameters.", ["appointmentid"]),
        ({"copayamount": "25.00", "appointmentid": "1002"}, "Invalid appointmentid.", None),
        ({"otheramount": "abc"}, "Invalid otheramount.", None),
        ({"otheramount": "-5.00"}, "Invalid otheramount.", None),
        ({}, "A payment amount is required.", None),
        (
            {"otheramount": "50.00", "claimpayment": json.dumps([{"5569": "40.00"}])},
            "The claimpayment amounts must add up to otheramount.",
            None,
        ),
        ({"otheramount": "10.00", "claimpayment": "not json"}, "Invalid claimpayment.", None),
        (
            {"otheramount": "10.00", "claimpayment": json.dumps([{"5569": 10}])},
            "Invalid claimpayment.",
            None,
        ),
        (
            {
                "otheramount": "20.00",
                "claimpayment": json.dumps([{"5569": "10.00"}, {"5569": "10.00"}]),
            },
            "Invalid claimpayment.",
            None,
        ),
        (
            {"otheramount": "10.00", "claimpayment": json.dumps([{"9999": "10.00"}])},
            "Invalid claim ID.",
            None,
        ),
        (
            {"otheramount": "10.00", "claimpayment": json.dumps([{"5571": "10.00"}])},
            "Claim is not eligible for payment.",
            None,
        ),
        (
            {"otheramount": "10.00", "claimpayment": json.dumps([{"7001": "10.00"}])},
            "Claim is not eligible for payment.",
            None,
        ),
        (
            {"otheramount": "40.01", "claimpayment": json.dumps([{"5569": "40.01"}])},
            "Payment exceeds the claim balance.",
            None,
        ),
    ],
)
def test_collectpayment_validation(
    sim: AthenaSim,
    http: httpx.Client,
    form: dict[str, str],
    error: str | None,
    missing: list[str] | None,
) -> None:
    r = pay(http, "60178", **form)
    assert r.status_code == 400, r.text
    body = r.json()
    if error is not None:
        assert body["error"] == error
    if missing is not None:
        assert body["missingfields"] == missing
    assert sim.receipts("60178")[-1]["epaymentid"] == "80002"  # nothing new
    assert sim.claim_balance("5569") == "40.00"
    assert CANARY_PAN not in r.text


def test_other_group_claim_is_fine_from_its_own_department(http: httpx.Client) -> None:
    r = pay(
        http,
        "60178",
        departmentid="5",
        otheramount="90.00",
        claimpayment=json.dumps([{"7001": "90.00"}]),
    )
    assert r.json()[0]["success"] == "true"


@pytest.mark.parametrize(
    ("pan", "exp", "text"),
    [
        ("4000000000000002", "3012", "Declined - card has been declined"),
        ("4111111111111112", "3012", "Invalid card number"),
        (CANARY_PAN, "2001", "Declined - the card has expired"),
    ],
)
def test_declines(sim: AthenaSim, http: httpx.Client, pan: str, exp: str, text: str) -> None:
    r = pay(http, "60179", trackdata=track(pan, exp), copayamount="30.00", appointmentid="1002")
    assert r.status_code == 200
    (entry,) = r.json()
    assert entry["success"] == "false" and entry["errortext"].startswith(text)
    assert sim.receipts("60179") == []


def test_duplicate_rule(http: httpx.Client) -> None:
    assert (
        pay(http, "60179", copayamount="30.00", appointmentid="1002").json()[0]["success"] == "true"
    )
    dup = pay(http, "60179", otheramount="30.00").json()[0]
    assert dup["success"] == "false" and "Duplicate" in dup["errortext"]
    assert pay(http, "60179", otheramount="31.00").json()[0]["success"] == "true"
    assert (
        pay(http, "60179", otheramount="30.00", allowduplicatepayments="true").json()[0]["success"]
        == "true"
    )
    assert pay(http, "60180", otheramount="30.00").json()[0]["success"] == "true"  # another patient


def test_unapplied_amount_becomes_credit(http: httpx.Client) -> None:
    assert pay(http, "60179", otheramount="12.00").json()[0]["success"] == "true"
    assert patient(http, "60179")["balances"][0]["balance"] == "-12.00"


# ---------------------------------------------------------------- recording and faults


def test_calls_are_recorded_without_card_data(sim: AthenaSim, http: httpx.Client) -> None:
    pay(
        http,
        "60178",
        otheramount="40.00",
        claimpayment=json.dumps([{"5569": "40.00"}]),
        nameoncard="GARY SANDBOXTEST",
        cardsecuritycode="123",
    )
    pay(http, "60178", otheramount="5.00", trackdata=track())
    call = sim.calls[-2]
    assert call["method"] == "POST" and call["endpoint"] == "collectpayment"
    tdata = call["form"]["trackdata"]
    assert tdata["last4"] == "1111" and len(tdata["trackdata_sha256"]) == 64
    assert sim.calls[-1]["form"]["trackdata"] == tdata  # same track, same digest
    assert (
        call["form"]["nameoncard"] == "[redacted]"
        and call["form"]["cardsecuritycode"] == "[redacted]"
    )
    remote = http.get("/_sim/calls").json()
    assert remote["collectpayment_posts"] == {"195900/60178": 2}
    assert sim.post_count("60178") == 2
    everything = json.dumps(remote) + json.dumps(sim.calls) + http.get("/_sim/receipts").text
    assert CANARY_PAN not in everything and "SANDBOXTEST/GARY" not in everything
    assert "GARY SANDBOXTEST" not in everything


def test_faults_over_http(sim: AthenaSim, http: httpx.Client) -> None:
    assert http.post("/_sim/faults", json={"kind": "nope"}).status_code == 400
    assert http.post("/_sim/faults", json={"kind": "status", "count": 0}).status_code == 400
    assert http.post("/_sim/faults", json={"kind": "slow"}).status_code == 400
    assert (
        http.post("/_sim/faults", json={"kind": "drop", "endpoint": "patient"}).status_code == 400
    )
    assert http.post("/_sim/faults", json={"kind": "status", "bogus": 1}).status_code == 400
    r = http.post(
        "/_sim/faults",
        json=[
            {"kind": "status", "endpoint": "ping", "status": 503, "count": 2},
            {"kind": "decline_next"},
        ],
    )
    assert r.json() == {"ok": True, "faults": 2}
    assert len(http.get("/_sim/faults").json()["faults"]) == 2
    assert [http.get("/v1/195900/ping").status_code for _ in range(3)] == [503, 503, 200]
    declined = pay(http, "60179", copayamount="30.00", appointmentid="1002").json()[0]
    assert declined["success"] == "false"
    assert (
        pay(http, "60179", copayamount="30.00", appointmentid="1002").json()[0]["success"] == "true"
    )
    assert http.post("/_sim/faults", json={"kind": "expire_tokens"}).status_code == 200
    assert http.get("/v1/195900/ping").status_code == 401


def test_reset_restores_fixtures(sim: AthenaSim, http: httpx.Client) -> None:
    pay(http, "60178", otheramount="40.00", claimpayment=json.dumps([{"5569": "40.00"}]))
    sim.add_fault("status", count=3)
    assert http.post("/_sim/reset").json() == {"ok": True}
    assert sim.claim_balance("5569") == "40.00"
    assert sim.faults == [] and sim.calls == []
    assert http.get("/v1/195900/ping").status_code == 200  # tokens survive a reset


@pytest.mark.parametrize(
    ("fault", "status", "ctype"),
    [
        ({"kind": "throttle", "retry_after": 2}, 429, "application/json"),
        ({"kind": "over_qps", "retry_after": 1}, 403, "text/html"),
        ({"kind": "html"}, 502, "text/html"),
        ({"kind": "html", "status": 200}, 200, "text/html"),
        ({"kind": "body", "body": "[]"}, 200, "application/json"),
        ({"kind": "status", "status": 500}, 500, "application/json"),
    ],
)
def test_gateway_faults(
    sim: AthenaSim, http: httpx.Client, fault: dict[str, Any], status: int, ctype: str
) -> None:
    sim.add_fault(endpoint="departments", **fault)
    r = http.get("/v1/195900/departments")
    assert r.status_code == status and r.headers["content-type"] == ctype
    if fault["kind"] in ("throttle", "over_qps"):
        assert r.headers["retry-after"] == str(fault["retry_after"])
    if fault["kind"] == "over_qps":
        assert "Developer Over Qps" in r.text
        assert r.headers["x-mashery-error-code"] == "ERR_403_DEVELOPER_OVER_QPS"
    assert http.get("/v1/195900/departments").status_code == 200  # one-shot


def test_drop_and_slow_faults(sim: AthenaSim, http: httpx.Client) -> None:
    sim.add_fault("drop", apply=True)
    with pytest.raises(httpx.RemoteProtocolError):
        pay(http, "60179", copayamount="30.00", appointmentid="1002")
    assert [r["epaymentid"] for r in sim.receipts("60179")] == ["90001"]
    sim.add_fault("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        pay(http, "60180", copayamount="20.00", appointmentid="1003")
    assert sim.receipts("60180") == []
    sim.add_fault("slow", seconds=0.3)
    started = time.monotonic()
    r = pay(http, "60180", copayamount="20.00", appointmentid="1003")
    assert r.status_code == 504 and time.monotonic() - started >= 0.3
    assert sim.receipts("60180") == []
    sim.add_fault("slow", seconds=0.3, apply=True)
    r = pay(http, "60180", copayamount="20.00", appointmentid="1003")
    assert r.json()[0]["success"] == "true"
    assert sim.post_count("60180") == 3


def test_token_lockout_fault(sim: AthenaSim) -> None:
    sim.add_fault("token_lockout", seconds=0.3, retry_after=0.3)
    with httpx.Client(base_url=sim.base_url) as c:

        def token() -> httpx.Response:
            return c.post(
                "/oauth2/v1/token",
                auth=(sim.client_id, sim.client_secret),
                data={"grant_type": "client_credentials"},
            )

        locked = token()
        assert locked.status_code == 429 and locked.headers["retry-after"] == "0.3"
        time.sleep(0.35)
        assert token().status_code == 200


def test_stop_does_not_wait_for_slow_answers() -> None:
    sim = AthenaSim()
    sim.start()
    sim.add_fault("slow", seconds=30)
    tok = sim.valid_token()
    import threading

    def post() -> None:
        try:
            httpx.post(
                f"{sim.base_url}/v1/195900/patients/60179/collectpayment",
                data={"departmentid": "1", "trackdata": track(), "otheramount": "1.00"},
                headers={"Authorization": f"Bearer {tok}"},
                timeout=10,
            )
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=post)
    t.start()
    time.sleep(0.2)
    started = time.monotonic()
    sim.stop()
    t.join(timeout=5)
    assert time.monotonic() - started < 3


def test_money_numbers_read_back_exactly(http: httpx.Client) -> None:
    p = patient(http, "60178")
    amounts = [c["patientbalance"] for g in p["claimbalancedetails"] for c in g["claimdetails"]]
    assert sorted(parse_athena_amount(a) for a in amounts) == [2550, 4000, 9000, 12000]


# ---------------------------------------------------------------- CLI


def test_cli_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "agent")}
    with subprocess.Popen(
        [sys.executable, "-m", "lobbypay.sim.athena", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            info = json.loads(proc.stdout.readline())
            assert set(info) == {"base_url", "practice_id", "client_id", "client_secret"}
            assert info["practice_id"] == "195900" and info["base_url"].startswith(
                "http://127.0.0.1:"
            )
            with httpx.Client(base_url=info["base_url"], timeout=5) as c:
                tok = c.post(
                    "/oauth2/v1/token",
                    auth=(info["client_id"], info["client_secret"]),
                    data={"grant_type": "client_credentials"},
                ).json()["access_token"]
                c.headers["Authorization"] = f"Bearer {tok}"
                assert c.post("/_sim/faults", json={"kind": "decline_next"}).status_code == 200
                r = c.post(
                    "/v1/195900/patients/60179/collectpayment",
                    data={
                        "departmentid": "1",
                        "trackdata": track(),
                        "copayamount": "30.00",
                        "appointmentid": "1002",
                    },
                )
                assert r.json()[0]["success"] == "false"
                assert c.get("/_sim/calls").json()["collectpayment_posts"] == {"195900/60179": 1}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert proc.stderr.read() == ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
