"""Logging for journald, with card-data redaction as a second line of defence.

The first line of defence is that card data never reaches a log call (card objects only
expose brand and last 4; the athena client never logs request bodies). This module is the
second: every record, and the final formatted text including tracebacks, is scrubbed of

* track text (``%B...^...?``, ``;<digits>=<digits>...?``, ``<digits>=<YYMM>`` fragments),
* a track-1 name field (``^SURNAME/GIVEN^``) on its own,
* digit runs of 12-19 digits (spaces or dashes allowed between digits) that pass Luhn,
* unbroken runs of 20 or more digits (a PAN glued to its expiry and service code when a
  track lost its ``=`` separator: too long to be one number, so the Luhn test cannot
  tell; nothing the agent logs legitimately is that long),

before it is written. Logs go to stdout (journald adds the timestamp), one JSON object per
line by default. The ``httpx``/``httpcore`` loggers are pinned to WARNING because httpx
logs every request URL (with patient ids) at INFO.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any, TextIO

from lobbypay.core.text import REDACTED, TRACK1_RE, TRACK2_RE, TRACK_NAME_RE

_DIGIT_RUN = re.compile(r"(?<!\d)\d(?:[ -]?\d){11,18}(?!\d)")
_LONG_DIGIT_RUN = re.compile(r"\d{20,}")
#: What every pattern above needs at least: a '%' (track 1), a '^' (a name field), or
#: eight digits with at most one space or dash between each two (track 2's 8+ digits, a
#: 12-19 digit run, a 20+ digit run). Text without any goes through in one scan.
_MAYBE_CARD = re.compile(r"[%^]|\d(?:[ -]?\d){7}")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _scrub_run(m: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", m.group(0))
    return REDACTED if luhn_ok(digits) else m.group(0)


def redact(text: str) -> str:
    """Remove anything that looks like card data from ``text``."""
    if not text or _MAYBE_CARD.search(text) is None:
        return text
    text = TRACK1_RE.sub(REDACTED, text)
    text = TRACK2_RE.sub(REDACTED, text)
    text = TRACK_NAME_RE.sub(REDACTED, text)
    text = _LONG_DIGIT_RUN.sub(REDACTED, text)
    return _DIGIT_RUN.sub(_scrub_run, text)


class RedactingFilter(logging.Filter):
    """Render the message once, scrub it, and freeze it (args dropped)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call must not leak or crash
            msg = f"<unformattable log message from {record.module}>"
        record.msg = redact(msg)
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: level, logger, message, extra ``fields`` if given."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            obj.update({k: v for k, v in fields.items() if k not in obj})
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(obj, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _AgentHandler(logging.StreamHandler[TextIO]):
    """The handler ``setup_logging`` installs (so a second call replaces it)."""


def setup_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Configure the root logger for the agent process (idempotent)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _AgentHandler):
            root.removeHandler(h)
    handler = _AgentHandler(stream or sys.stdout)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter("%(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _log_uncaught(name: str, exc_type: type[BaseException], exc: BaseException | None,
                  tb: Any) -> None:
    """Write an uncaught exception through the redacting handler (or, with no handler,
    redacted to stderr). Python's default hooks print the traceback and the exception
    text straight to stderr, past every redaction."""
    logger = logging.getLogger("lobbypay.crash")
    if logging.getLogger().handlers:
        logger.critical("%s: uncaught %s", name, exc_type.__name__,
                        exc_info=(exc_type, exc, tb) if exc is not None else None)
        return
    import traceback

    text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(redact(f"{name}: uncaught {exc_type.__name__}\n{text}"))


def install_crash_hooks() -> None:
    """Route every path by which Python prints an exception or a warning on its own
    (``sys.excepthook`` when the process dies, ``threading.excepthook``,
    ``sys.unraisablehook`` for errors in ``__del__`` and finalizers, and ``warnings``)
    through logging, so the redaction above applies to them too. asyncio's own handler
    ("Task exception was never retrieved") already logs through logging."""
    import threading

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        _log_uncaught("process", exc_type, exc, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        _log_uncaught(f"thread {args.thread.name if args.thread else '?'}",
                      args.exc_type, args.exc_value, args.exc_traceback)

    def unraisable_hook(args: Any) -> None:
        # The default hook also prints repr(args.object), which may be a buffer: not here.
        _log_uncaught("unraisable", args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
    sys.unraisablehook = unraisable_hook
    logging.captureWarnings(True)
