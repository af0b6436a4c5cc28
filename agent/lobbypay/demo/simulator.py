"""What the demo reads from the athena simulator: the calls it recorded (track data only
as a keyed digest and last 4, and printed so), its reset, and its test patients."""

from __future__ import annotations

import json
from typing import Any

from lobbypay.demo.printer import Printer
from lobbypay.ui import table


async def athena_calls(base_url: str) -> list[dict[str, Any]]:
    import httpx

    async with httpx.AsyncClient(timeout=5) as http:
        resp = await http.get(base_url + "/_sim/calls")
        resp.raise_for_status()
        data = resp.json()
    return list(data["calls"] if isinstance(data, dict) else data)

async def sim_reset(base_url: str) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=5) as http:
        resp = await http.post(base_url + "/_sim/reset")
        resp.raise_for_status()


def fixture_patients(practice: str = "195900") -> list[list[str]]:
    """The simulator's test patients (docs/athena.md section 6), one row each: id, name,
    appointments with their copay, claims with balance, department and whether clean."""
    from importlib import resources

    text = resources.files("lobbypay.sim").joinpath("fixtures/athena.json").read_text("utf-8")
    data = json.loads(text)["practices"][practice]
    rows = []
    for pid, pat in data["patients"].items():
        appts = [f"{aid} ({a.get('copay', '0.00')})" for aid, a in data["appointments"].items()
                 if a.get("patientid") == pid]
        claims = [f"{c['claimid']} {c['patientbalance']} dept {c['departmentid']}"
                  + ("" if c.get("clean") else " not clean") for c in pat.get("claims", [])]
        rows.append([pid, f"{pat['firstname']} {pat['lastname']}", ", ".join(appts) or "-",
                     "; ".join(claims) or "-"])
    return rows


def _form_value(key: str, value: Any) -> str:
    if isinstance(value, dict) and "last4" in value:
        digest = next((v for k, v in value.items() if k.endswith("_sha256")), "")
        return f"<card data: sha256 {str(digest)[:12]}..., last4 {value.get('last4')}>"
    return str(value)


def print_athena_calls(calls: list[dict[str, Any]], since: int, p: Printer) -> None:
    st = p.st
    rows = [[c["method"], c["path"] + (("?" + "&".join(f"{k}={v}" for k, v in c["query"].items()))
                                        if c.get("query") else ""), str(c.get("status"))]
            for c in calls[since:]]
    p.line(table(["METHOD", "PATH", "STATUS"], rows, st))
    posts = [c for c in calls[since:] if c.get("endpoint") == "collectpayment"]
    for c in posts:
        p.line()
        p.line(f"  {st('bold', 'POST ' + c['path'])} -> {c.get('status')}, form:")
        p.line(table(["FIELD", "VALUE"],
                     [[k, _form_value(k, v)] for k, v in sorted(c["form"].items())],
                     st, indent="    "))
    if posts:
        p.line(st("dim", "  (the simulator keeps only a keyed digest and the last 4 of the "
                         "track data; so does this output)"))

