"""The redaction filter: a second line of defence against card data in logs."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lobbypay.shell.logsafe import RedactingFilter, luhn_ok, redact, setup_logging

CANARY = "4111111111111111"
TRACKS = f"%B{CANARY}^DOE/JANE^2912101000000000000000?;{CANARY}=29121010000000000000?"


@pytest.mark.parametrize(
    "text",
    [
        CANARY,
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        TRACKS,
        f"card={CANARY} failed",
        f";{CANARY}=2912101?",
        f"{CANARY}=2912",
        "%B4111111111111111^DOE/JANE^2912?",
    ],
)
def test_card_data_is_redacted(text: str) -> None:
    out = redact(text)
    assert CANARY not in out.replace(" ", "").replace("-", "")
    assert "DOE/JANE" not in out


@pytest.mark.parametrize(
    "text",
    ["total 65.00 for claim 5569", "epayment 123456", "patient 60178 department 1",
     "request 9f1c2d3e-aaaa", "phone 5551234567", "1234567890123"],  # last: Luhn-invalid 13 digits
)
def test_ordinary_text_survives(text: str) -> None:
    assert redact(text) == text


def test_luhn() -> None:
    assert luhn_ok(CANARY) and luhn_ok("378282246310005") and not luhn_ok("4111111111111112")


def test_handler_redacts_args_and_tracebacks() -> None:
    buf = io.StringIO()
    setup_logging("debug", "json", stream=buf)
    log = logging.getLogger("lobbypay.test")
    log.info("swipe %s", TRACKS)
    try:
        raise ValueError(f"bad {CANARY}")
    except ValueError:
        log.exception("boom")
    out = buf.getvalue()
    assert CANARY not in out
    lines = [json.loads(x) for x in out.splitlines()]
    assert lines[0]["msg"] == "swipe [redacted][redacted]"
    assert "ValueError" in lines[1]["exc"]
    logging.getLogger().handlers.clear()


def test_filter_survives_broken_format_args() -> None:
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "%d %d", ("a",), None)
    assert RedactingFilter().filter(rec)
    assert "unformattable" in rec.getMessage()


def test_httpx_logger_pinned() -> None:
    setup_logging("debug", "text", stream=io.StringIO())
    assert logging.getLogger("httpx").level == logging.WARNING
    logging.getLogger().handlers.clear()


def _redact_every_pattern(text: str) -> str:
    """``redact`` without its quick pre-check: every pattern, always."""
    import lobbypay.shell.logsafe as ls
    from lobbypay.core.text import TRACK1_RE, TRACK2_RE, TRACK_NAME_RE

    text = TRACK1_RE.sub(ls.REDACTED, text)
    text = TRACK2_RE.sub(ls.REDACTED, text)
    text = TRACK_NAME_RE.sub(ls.REDACTED, text)
    text = ls._LONG_DIGIT_RUN.sub(ls.REDACTED, text)
    return ls._DIGIT_RUN.sub(ls._scrub_run, text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789 -%^=;?/ABab:\n"), max_size=80)
       | st.text(max_size=60))
def test_the_quick_check_never_lets_through_what_the_patterns_catch(text: str) -> None:
    assert redact(text) == _redact_every_pattern(text)
