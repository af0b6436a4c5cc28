"""What athena's reads show of the simulator's world: the patient with balances per
provider group and claims as athena renders them (JSON numbers, or strings and ids as
text for the "strings" style patient), the appointment and its copay, the receipts of a
department, and the departments a page at a time."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from lobbypay.sim.reply import Reply, error_reply, json_reply
from lobbypay.sim.world import World, eastern_text, money_number, money_text


def departments(
    world: World, practice_id: str, query: Mapping[str, str], page_size: int | None
) -> Reply:
    """``GET /departments``: one page (``limit``/``offset``), with a ``next`` link."""
    with world.lock:
        depts = copy.deepcopy(world.practices[practice_id]["departments"])
    limit = _int(query.get("limit")) or page_size or len(depts) or 1
    offset = _int(query.get("offset")) or 0
    page = depts[offset : offset + limit]
    body: dict[str, Any] = {"departments": page, "totalcount": len(depts)}
    if offset + limit < len(depts):
        body["next"] = f"/v1/{practice_id}/departments?" + urlencode(
            {"limit": limit, "offset": offset + limit}
        )
    return json_reply(200, body)


def patient(world: World, practice_id: str, patient_id: str, query: Mapping[str, str]) -> Reply:
    """``GET /patients/{id}``: an array of one, balances per provider group, and the
    claims with ``showbalancedetails=true``."""
    with world.lock:
        practice = world.practices[practice_id]
        patient = practice["patients"].get(patient_id)
        if patient is None:
            return error_reply(
                404, "The patient could not be found.", f"No patient with id {patient_id}"
            )
        dept = query.get("departmentid")
        if dept is not None and world.group_of(practice, dept) is None:
            return error_reply(400, "Invalid departmentid.")
        show_details = query.get("showbalancedetails", "").lower() == "true"
        show_all = query.get("showallclaims", "").lower() == "true"
        return json_reply(
            200, [_render_patient(world, practice, patient_id, patient, show_details, show_all)]
        )


def _render_patient(
    world: World,
    practice: dict[str, Any],
    patient_id: str,
    patient: dict[str, Any],
    details: bool,
    show_all: bool,
) -> dict[str, Any]:
    strings = patient.get("style") == "strings"
    enterprise = practice["enterprise"]

    def money(cents: int) -> Any:
        return money_text(cents) if strings else money_number(cents)

    def ident(text: str) -> Any:
        return text if strings else int(text)

    groups: dict[str, list[str]] = {}
    for d in practice["departments"]:
        groups.setdefault(str(d["providergroupid"]), []).append(d["departmentid"])
    all_depts = [d["departmentid"] for d in practice["departments"]]
    primary_group = world.group_of(practice, patient["primarydepartmentid"]) or ""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for claim in patient["claims"]:
        group = world.group_of(practice, claim["departmentid"]) or ""
        by_group.setdefault(group, []).append(claim)

    balances = []
    for group in sorted(
        set(by_group) | ({primary_group} if patient["credit_cents"] else set())
    ):
        claims = by_group.get(group, [])
        total = sum(c["balance_cents"] for c in claims)
        if group == primary_group:
            total -= patient["credit_cents"]
        entry: dict[str, Any] = {
            "balance": money_text(total),
            "departmentlist": ",".join(groups.get(group, all_depts)),
            "providergroupid": int(group) if group.isdigit() else group,
            "cleanbalance": all(c["clean"] for c in claims if c["balance_cents"]),
        }
        plan = sum(c["balance_cents"] for c in claims if not c["clean"])
        if plan:
            entry["paymentplanbalance"] = money_text(plan)
        balances.append(entry)

    out: dict[str, Any] = {
        "patientid": patient_id,
        "firstname": patient["firstname"],
        "lastname": patient["lastname"],
        "dob": patient["dob"],
        "departmentid": patient["primarydepartmentid"],
        "primarydepartmentid": patient["primarydepartmentid"],
        "status": "active",
        "balances": balances,
    }
    if not details or patient.get("style") == "no_claimbalancedetails":
        return out
    cbd = []
    for group, claims in sorted(by_group.items()):
        shown = [c for c in claims if c["balance_cents"] or show_all]
        if not shown:
            continue
        cbd.append(
            {
                "providergroupid": (ident(group) if enterprise else ""),
                "departmentids": ",".join(
                    groups.get(group, all_depts) if enterprise else all_depts
                ),
                "claimdetails": [_render_claim(c, strings, money, ident) for c in shown],
            }
        )
    out["claimbalancedetails"] = cbd
    return out


def _render_claim(
    c: dict[str, Any], strings: bool, money: Callable[[int], Any], ident: Callable[[str], Any]
) -> dict[str, Any]:
    charge: dict[str, Any] = {
        "id": ident(str(int(c["claimid"]) * 10 + 1)),
        "procedurecode": c["procedurecode"],
        "description": c["description"],
        "amount": money(c["amount_cents"]),
        "transactions": [
            {**t, "amount": money(t["amount_cents"]), "epaymentid": ident(t["epaymentid"])}
            for t in ({k: v for k, v in t.items()} for t in c["transactions"])
        ],
    }
    for t in charge["transactions"]:
        t.pop("amount_cents", None)
    claim: dict[str, Any] = {
        "claimid": ident(c["claimid"]),
        "departmentid": ident(c["departmentid"]),
        "amount": money(c["amount_cents"]),
        "cleanbalance": c["clean"],
        "supervisingproviderid": ident("20"),
    }
    if strings:
        claim["outstandingp"] = money(c["balance_cents"])
        claim["servicedate"] = c["servicedate"]
        charge["fromdate"] = c["servicedate"]
        charge["printprocedurecode"] = c["procedurecode"]
        charge["parentchargetransfertype"] = "p"
    else:
        claim["patientbalance"] = money(c["balance_cents"])
        claim["servicedate"] = c["servicedate"]
        charge["servicedate"] = c["servicedate"]
    claim["chargeleveldetail"] = [charge]
    return claim


def appointment(world: World, practice_id: str, appointment_id: str) -> Reply:
    """``GET /appointments/{id}``: an array of one with its copay."""
    with world.lock:
        a = world.practices[practice_id]["appointments"].get(appointment_id)
        if a is None:
            return error_reply(404, "The appointment could not be found.")
        strings = a.get("style") == "strings"

        def money(cents: int) -> Any:
            return money_text(cents) if strings else money_number(cents)

        return json_reply(
            200,
            [
                {
                    "appointmentid": appointment_id,
                    "patientid": a["patientid"],
                    "departmentid": a["departmentid"],
                    "date": a["date"],
                    "starttime": a["starttime"],
                    "appointmentstatus": "f",
                    "copay": {
                        "insurancecopay": money(a["copay_cents"]),
                        "collectedforappointment": money(a["collected_cents"]),
                        "collectedforother": money(0),
                    },
                }
            ],
        )


def receipts(world: World, practice_id: str, patient_id: str, query: Mapping[str, str]) -> Reply:
    """``GET /patients/{id}/receipts?departmentid=``: the department's receipts."""
    with world.lock:
        practice = world.practices[practice_id]
        patient = practice["patients"].get(patient_id)
        if patient is None:
            return error_reply(404, "The patient could not be found.")
        dept = query.get("departmentid")
        if not dept:
            return error_reply(400, "Missing parameters.", None, ["departmentid"])
        if world.group_of(practice, dept) is None:
            return error_reply(400, "Invalid departmentid.")
        strings = patient.get("style") == "strings"
        rows = []
        for r in practice["receipts"]:
            if r["patientid"] != patient_id or r["departmentid"] != dept:
                continue
            rows.append(
                {
                    "amount": money_text(r["amount_cents"])
                    if strings
                    else money_number(r["amount_cents"]),
                    "cardnumberlast4digits": r["last4"],
                    "cardtypeabbreviation": r["brand"],
                    "cardtypename": {
                        "VI": "Visa",
                        "MC": "MasterCard",
                        "AX": "American Express",
                        "DI": "Discover",
                    }.get(r["brand"], "Other"),
                    "contractid": "",
                    "epaymentid": r["epaymentid"] if strings else int(r["epaymentid"]),
                    "requestdate": eastern_text(r["at"], world.receipt_date_format),
                    "type": "PAYMENT",
                }
            )
        return json_reply(200, {"receipts": rows, "totalcount": len(rows)})


def _int(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None
    return int(text)


__all__ = ["appointment", "departments", "patient", "receipts"]
