"""The athena simulator's routes: which endpoint a method and path stand for."""

from __future__ import annotations

import pytest
from lobbypay.sim.faults import ENDPOINTS
from lobbypay.sim.server import route


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("POST", "/oauth2/v1/token", ("token", None, {})),
    ("GET", "/oauth2/v1/token", ("other", None, {})),
    ("GET", "/v1/195900/ping", ("ping", "195900", {})),
    ("GET", "/v1/195900/departments", ("departments", "195900", {})),
    ("GET", "/v1/195900/patients/60178", ("patient", "195900", {"patientid": "60178"})),
    ("GET", "/v1/195900/appointments/1001",
     ("appointment", "195900", {"appointmentid": "1001"})),
    ("GET", "/v1/195900/patients/60178/receipts",
     ("receipts", "195900", {"patientid": "60178"})),
    ("POST", "/v1/195900/patients/60178/collectpayment",
     ("collectpayment", "195900", {"patientid": "60178"})),
    ("POST", "/v1/195900/patients/60178/voidpayment/90001",
     ("voidpayment", "195900", {"patientid": "60178", "epaymentid": "90001"})),
    ("POST", "/v1/195900/patients/60178/receipts/90001/email",
     ("receiptemail", "195900", {"patientid": "60178", "epaymentid": "90001"})),
    ("GET", "/v1/195900/patients/60178/claims", ("other", "195900", {})),
    ("GET", "/v1/195900", ("other", "195900", {})),
    ("GET", "/v1/practice/ping", ("other", None, {})),
    ("GET", "/v2/195900/ping", ("other", None, {})),
])
def test_route(method: str, path: str, expected: tuple[str, str | None, dict[str, str]]) -> None:
    assert route(method, path) == expected


def test_every_routed_endpoint_can_carry_a_fault() -> None:
    routed = {"token", "ping", "departments", "patient", "appointment", "receipts",
              "collectpayment", "voidpayment", "receiptemail"}
    assert routed | {"any"} == set(ENDPOINTS)
