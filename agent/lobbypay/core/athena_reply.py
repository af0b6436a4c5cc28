"""What athena's HTTP answer to a POST means (pure): the decision the client acts on.

``classify_payment_response`` reads the answer to ``collectpayment``: a result
(``Approved`` / ``Declined``) or the ``AthenaError`` the client raises. The question it
answers for every error is *may the card have been charged?* (docs/athena.md, section 4):

=============================================  =========================  ============
answer                                         result                     charged?
=============================================  =========================  ============
2xx ``success`` "true" with an ``epaymentid``  ``Approved``               yes
2xx ``success`` "false"                        ``Declined`` (cleaned)     no
2xx "Unknown ..." processor text               ``OutcomeUnknown``         ?
2xx that does not parse                        ``OutcomeUnknown``         ?
401                                            ``AthenaUnavailable``      no (gateway)
429; 403 with throttle words                   ``AthenaThrottled``        no (gateway)
404                                            ``NotFound``               no
other 4xx with athena's error body             ``AthenaRejected``         no
403 without an error body                      ``AthenaRejected``         no
4xx without an error body, 3xx, 5xx            ``OutcomeUnknown``         ?
=============================================  =========================  ============

``classify_action_response`` reads the answer to a void or a receipt email with the same
gateway rules (401, throttling, 5xx); those are safe to send again, so any 4xx is a
refusal and a 2xx counts only when it says it succeeded.

Both *return* the error rather than raise it: the caller raises it where no other
exception is being handled, so nothing is ever chained onto it. Neither decides what the
client does to its token cache (a 401 makes it drop the token) or what it logs.

The body is decoded JSON, or ``NOT_JSON`` when the answer was not JSON (``decode_json``).
Peer text kept in a result or an error goes through ``clean_peer_text`` with the POST's
``secrets`` (its card fields, the email address).
"""

from __future__ import annotations

import json
from typing import Final

from lobbypay.core.athena import (
    AthenaError,
    AthenaParseError,
    AthenaRejected,
    AthenaThrottled,
    AthenaUnavailable,
    Declined,
    NotFound,
    OutcomeUnknown,
    OutcomeUnknownText,
    PaymentResult,
    clean_peer_text,
    is_throttle_text,
    parse_action_result,
    parse_error_body,
    parse_payment_result,
)

#: What a call is named in error text: the method and the path *template* (no ids).
PAYMENT_CALL: Final = "POST /patients/{patientid}/collectpayment"
#: The body of an answer that is not JSON (HTML error pages, garbage, empty).
NOT_JSON: Final = object()
#: How much of a 403's body is searched for the throttle words.
THROTTLE_TEXT_BYTES: Final = 4096


def decode_json(content: bytes) -> object:
    """The body as JSON, or ``NOT_JSON``."""
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return NOT_JSON


def is_throttled(status: int, mashery_code: str, content: bytes) -> bool:
    """Whether the gateway throttled the call: a 429, or a 403 whose
    ``X-Mashery-Error-Code`` (``mashery_code``) or body says "Over Qps"/"Over Rate"."""
    if status == 429:
        return True
    if status != 403:
        return False
    if is_throttle_text(mashery_code.replace("_", " ")):
        return True
    return is_throttle_text(content[:THROTTLE_TEXT_BYTES].decode("utf-8", "replace"))


def classify_payment_response(
    status: int,
    body: object,
    *,
    throttled: bool = False,
    secrets: tuple[str, ...] = (),
    request_id: str | None = None,
    what: str = PAYMENT_CALL,
) -> PaymentResult | AthenaError:
    """What athena's answer to the payment POST means (see the table above).

    ``throttled``: ``is_throttled`` of the answer (a 429 is throttled whatever it says).
    ``what`` names the call in error text."""
    if 200 <= status < 300:
        return _payment_2xx(status, body, secrets, request_id, what)
    not_processed = _gateway_refusal(status, throttled, request_id, what)
    if not_processed is not None:
        return not_processed
    err = parse_error_body(body, secrets)
    if status == 404:
        return NotFound(
            f"{what}: {err.error if err else 'not found'}",
            status=404,
            request_id=request_id,
            detailed=err.detailed if err else None,
        )
    if 400 <= status < 500 and err is not None:
        # athena's application validated the request and refused it
        return AthenaRejected(
            f"{what}: {err.error}",
            status=status,
            request_id=request_id,
            detailed=err.detailed,
            missing_fields=err.missing_fields,
        )
    if status == 403:
        return AthenaRejected(f"{what}: forbidden (HTTP 403)", status=403, request_id=request_id)
    # 5xx, 3xx, 4xx without athena's error body: no proof either way.
    return _no_proof(status, request_id, what)


def classify_action_response(
    status: int,
    body: object,
    *,
    what: str,
    noun: str,
    throttled: bool = False,
    secrets: tuple[str, ...] = (),
    request_id: str | None = None,
) -> AthenaError | None:
    """What athena's answer to a void or a receipt email means: ``None`` when it is done,
    else the error. ``noun`` ("void", "receipt email") names it in athena's refusals."""
    if 200 <= status < 300:
        outcome = parse_action_result(None if body is NOT_JSON else body, noun, secrets)
        if outcome.ok:
            return None
        return AthenaRejected(outcome.reason, status=status, request_id=request_id)
    not_processed = _gateway_refusal(status, throttled, request_id, what)
    if not_processed is not None:
        return not_processed
    if 400 <= status < 500:
        err = parse_error_body(body, secrets)
        return AthenaRejected(
            err.error if err else f"HTTP {status}", status=status, request_id=request_id
        )
    return _no_proof(status, request_id, what)


def _payment_2xx(
    status: int, body: object, secrets: tuple[str, ...], request_id: str | None, what: str
) -> PaymentResult | AthenaError:
    try:
        result = parse_payment_result(body)
    except OutcomeUnknownText as exc:  # athena itself does not know: not a decline
        text = clean_peer_text(exc.message, secrets)
        return OutcomeUnknown(f"{what}: {text}", status=status, request_id=request_id)
    except AthenaParseError as exc:  # a 2xx we cannot read may still be a charge
        return OutcomeUnknown(
            f"{what}: HTTP {status} unreadable ({exc.message}); outcome unknown",
            status=status,
            request_id=request_id,
        )
    if isinstance(result, Declined):
        # a decline text may quote the card (a name, a number) like an error does
        return Declined(clean_peer_text(result.errortext, secrets))
    return result


def _gateway_refusal(
    status: int, throttled: bool, request_id: str | None, what: str
) -> AthenaError | None:
    """The gateway's answers given *instead of* forwarding the call: not processed."""
    if status == 401:
        # the gateway refused the bearer token before routing the call
        return AthenaUnavailable(
            f"{what}: not processed: token refused (HTTP 401)", status=401, request_id=request_id
        )
    if status == 429 or (status == 403 and throttled):
        return AthenaThrottled(
            f"{what}: not processed: throttled (HTTP {status})",
            status=status,
            request_id=request_id,
        )
    return None


def _no_proof(status: int, request_id: str | None, what: str) -> OutcomeUnknown:
    return OutcomeUnknown(
        f"{what}: HTTP {status}; outcome unknown", status=status, request_id=request_id
    )


__all__ = [
    "NOT_JSON",
    "PAYMENT_CALL",
    "classify_action_response",
    "classify_payment_response",
    "decode_json",
    "is_throttled",
]
