"""What an answer to the payment POST (and to a void or a receipt email) means: one row per
case of core/athena_reply.py's table, asserting the exact result or error class."""

from __future__ import annotations

from typing import Any

import pytest
from lobbypay.core.athena import (
    Approved,
    AthenaError,
    AthenaRejected,
    AthenaThrottled,
    AthenaUnavailable,
    Declined,
    NotFound,
    OutcomeUnknown,
)
from lobbypay.core.athena_reply import (
    NOT_JSON,
    PAYMENT_CALL,
    classify_action_response,
    classify_payment_response,
    decode_json,
    is_throttled,
)

APPROVED = [{"success": "true", "epaymentid": 90001, "errortext": ""}]
DECLINED = [{"success": "false", "errortext": "Declined - card has been declined"}]
UNKNOWN_TEXT = [{"success": "false", "errortext": "Unknown - contact athena with CCP 123"}]
ERROR_BODY = {"error": "Invalid departmentid.", "detailedmessage": "no such department",
              "missingfields": ["departmentid"]}
CANARY = "4111111111111111"

# (status, body, throttled, the exact class of the result)
PAYMENT_CASES: list[tuple[str, int, object, bool, type[Any]]] = [
    ("approved", 200, APPROVED, False, Approved),
    ("approved, JSON true and a string id", 200,
     [{"success": True, "epaymentid": "90001"}], False, Approved),
    ("approved with another 2xx", 201, APPROVED, False, Approved),
    ("declined", 200, DECLINED, False, Declined),
    ("declined without a reason", 200, [{"success": "false"}], False, Declined),
    ("duplicate refused by athena as a decline", 200,
     [{"success": "false", "errortext": "Duplicate payment"}], False, Declined),
    ("the processor's Unknown text", 200, UNKNOWN_TEXT, False, OutcomeUnknown),
    ("2xx not JSON", 200, NOT_JSON, False, OutcomeUnknown),
    ("2xx empty array", 200, [], False, OutcomeUnknown),
    ("2xx two entries", 200, APPROVED * 2, False, OutcomeUnknown),
    ("2xx bare object", 200, APPROVED[0], False, OutcomeUnknown),
    ("2xx success without an epaymentid", 200, [{"success": "true"}], False, OutcomeUnknown),
    ("2xx entry without success", 200, [{"epaymentid": 1}], False, OutcomeUnknown),
    ("2xx success not a flag", 200, [{"success": "maybe", "epaymentid": 1}], False,
     OutcomeUnknown),
    ("2xx error body", 200, ERROR_BODY, False, OutcomeUnknown),
    ("401 token refused by the gateway", 401, {"error": "Unauthorized"}, False,
     AthenaUnavailable),
    ("401 without a body", 401, NOT_JSON, False, AthenaUnavailable),
    ("429 throttled", 429, NOT_JSON, False, AthenaThrottled),
    ("429 with an error body", 429, {"error": "Too Many Requests"}, False, AthenaThrottled),
    ("403 Over Qps", 403, NOT_JSON, True, AthenaThrottled),
    ("403 Over Qps with a JSON body", 403, {"error": "Developer Over Qps"}, True,
     AthenaThrottled),
    ("403 forbidden with an error body", 403, {"error": "Forbidden"}, False, AthenaRejected),
    ("403 forbidden without a body", 403, NOT_JSON, False, AthenaRejected),
    ("404 with an error body", 404, {"error": "The patient could not be found."}, False,
     NotFound),
    ("404 without a body", 404, NOT_JSON, False, NotFound),
    ("400 athena's error body", 400, ERROR_BODY, False, AthenaRejected),
    ("422 athena's error body", 422, {"error": "Invalid claimpayment."}, False, AthenaRejected),
    ("400 without an error body", 400, NOT_JSON, False, OutcomeUnknown),
    ("409 JSON that is not an error body", 409, {"status": "conflict"}, False, OutcomeUnknown),
    ("408 from a proxy", 408, NOT_JSON, False, OutcomeUnknown),
    ("413 from a proxy", 413, NOT_JSON, False, OutcomeUnknown),
    ("500", 500, {"error": "Internal Server Error"}, False, OutcomeUnknown),
    ("502 HTML", 502, NOT_JSON, False, OutcomeUnknown),
    ("503", 503, {"error": "Service Unavailable"}, False, OutcomeUnknown),
    ("504 after the application may have charged", 504, NOT_JSON, False, OutcomeUnknown),
    ("302 redirect", 302, NOT_JSON, False, OutcomeUnknown),
    ("100", 100, NOT_JSON, False, OutcomeUnknown),
    ("throttle words on a 5xx are no throttle", 503, NOT_JSON, True, OutcomeUnknown),
    ("throttle words on a 404 are no throttle", 404, NOT_JSON, True, NotFound),
]


@pytest.mark.parametrize(("case", "status", "body", "throttled", "expected"), PAYMENT_CASES,
                         ids=[c[0] for c in PAYMENT_CASES])
def test_payment_response(case: str, status: int, body: object, throttled: bool,
                          expected: type[Any]) -> None:
    result = classify_payment_response(status, body, throttled=throttled, request_id="rid-1")
    assert type(result) is expected
    if isinstance(result, AthenaError):
        assert result.status == status
        assert result.request_id == "rid-1"
        assert result.message.startswith(PAYMENT_CALL)
        assert result.__cause__ is None and result.__context__ is None


def test_payment_results_carry_what_athena_said() -> None:
    approved = classify_payment_response(200, APPROVED)
    assert approved == Approved("90001")
    assert classify_payment_response(200, DECLINED) == Declined("Declined - card has been declined")
    assert classify_payment_response(200, [{"success": "false"}]) == Declined(
        "declined (athena gave no reason)")
    rejected = classify_payment_response(400, ERROR_BODY)
    assert isinstance(rejected, AthenaRejected)
    assert rejected.message == f"{PAYMENT_CALL}: Invalid departmentid."
    assert rejected.detailed == "no such department"
    assert rejected.missing_fields == ("departmentid",)
    unknown = classify_payment_response(200, UNKNOWN_TEXT)
    assert isinstance(unknown, OutcomeUnknown) and "Unknown - contact athena" in unknown.message
    assert classify_payment_response(503, NOT_JSON).message == (
        f"{PAYMENT_CALL}: HTTP 503; outcome unknown")
    assert classify_payment_response(401, NOT_JSON, what="POST /x").message == (
        "POST /x: not processed: token refused (HTTP 401)")


@pytest.mark.parametrize("status", [200, 400, 404, 403])
def test_payment_text_is_masked_for_the_cards_secrets(status: int) -> None:
    name = "SANDBOXTEST/JANE"
    said = f"card {CANARY} of {name} refused"
    body: object = ([{"success": "false", "errortext": said}] if status == 200
                    else {"error": said, "detailedmessage": said})
    result = classify_payment_response(status, body, secrets=(name, CANARY))
    text = result.errortext if isinstance(result, Declined) else repr(vars(result))
    assert CANARY not in text and name not in text and "[redacted]" in text


# (status, body, throttled, the exact class of the error; None: done)
ACTION_CASES: list[tuple[str, int, object, bool, type[Any] | None]] = [
    ("done", 200, {"success": "true"}, False, None),
    ("done, array form", 200, [{"success": "true"}], False, None),
    ("done, JSON true", 200, {"success": True}, False, None),
    ("refused after settlement", 200, {"success": "false", "errortext": "already settled"},
     False, AthenaRejected),
    ("2xx not JSON", 200, NOT_JSON, False, AthenaRejected),
    ("2xx empty array", 200, [], False, AthenaRejected),
    ("2xx without success", 200, {"voided": "true"}, False, AthenaRejected),
    ("2xx error body", 200, ERROR_BODY, False, AthenaRejected),
    ("401", 401, NOT_JSON, False, AthenaUnavailable),
    ("429", 429, NOT_JSON, False, AthenaThrottled),
    ("403 Over Qps", 403, NOT_JSON, True, AthenaThrottled),
    ("403 forbidden", 403, NOT_JSON, False, AthenaRejected),
    ("404 is a refusal, not NotFound", 404, {"error": "The payment could not be found."},
     False, AthenaRejected),
    ("400 with an error body", 400, {"error": "Invalid email address."}, False,
     AthenaRejected),
    ("400 without an error body", 400, NOT_JSON, False, AthenaRejected),
    ("500", 500, NOT_JSON, False, OutcomeUnknown),
    ("502 HTML", 502, NOT_JSON, False, OutcomeUnknown),
    ("302", 302, NOT_JSON, False, OutcomeUnknown),
]


@pytest.mark.parametrize(("case", "status", "body", "throttled", "expected"), ACTION_CASES,
                         ids=[c[0] for c in ACTION_CASES])
def test_action_response(case: str, status: int, body: object, throttled: bool,
                         expected: type[Any] | None) -> None:
    what = "POST /patients/{patientid}/voidpayment/{epaymentid}"
    result = classify_action_response(status, body, what=what, noun="void",
                                      throttled=throttled, request_id="rid-2")
    if expected is None:
        assert result is None
        return
    assert type(result) is expected
    assert result is not None and result.status == status and result.request_id == "rid-2"


def test_action_refusals_carry_athenas_text() -> None:
    what = "POST /patients/{patientid}/receipts/{epaymentid}/email"
    address = "patient@example.org"
    refused = classify_action_response(
        400, {"error": f"Invalid email address {address}."}, what=what, noun="receipt email",
        secrets=(address,))
    assert refused is not None and refused.message == "Invalid email address [redacted]."
    bare = classify_action_response(400, NOT_JSON, what=what, noun="receipt email")
    assert bare is not None and bare.message == "HTTP 400"
    silent = classify_action_response(200, {"success": "false"}, what=what, noun="void")
    assert silent is not None and silent.message == "athena refused the void (no reason given)"
    lost = classify_action_response(504, NOT_JSON, what=what, noun="void")
    assert lost is not None and lost.message == f"{what}: HTTP 504; outcome unknown"


@pytest.mark.parametrize(("status", "code", "content", "expected"), [
    (429, "", b"", True),
    (403, "ERR_403_DEVELOPER_OVER_QPS", b"", True),
    (403, "ERR_403_DEVELOPER_OVER_RATE", b"", True),
    (403, "", b"<html><body><h1>Developer Over Qps</h1></body></html>", True),
    (403, "", b'{"error": "Account Over Rate Limit"}', True),
    (403, "", b'{"error": "Forbidden"}', False),
    (403, "", b"x" * 4096 + b"Over Qps", False),  # only the head of the body is read
    (503, "ERR_403_DEVELOPER_OVER_QPS", b"Over Qps", False),
    (200, "", b"Over Qps", False),
])
def test_is_throttled(status: int, code: str, content: bytes, expected: bool) -> None:
    assert is_throttled(status, code, content) is expected


@pytest.mark.parametrize(("content", "expected"), [
    (b'[{"success": "true"}]', [{"success": "true"}]),
    (b"{}", {}),
    (b"", NOT_JSON),
    (b"<html>502</html>", NOT_JSON),
    (b"\xff\xfe", NOT_JSON),
    (b"[" * 100_000 + b"]" * 100_000, NOT_JSON),  # too deep for the parser
])
def test_decode_json(content: bytes, expected: object) -> None:
    got = decode_json(content)
    assert got is expected if expected is NOT_JSON else got == expected
