"""Protocol v1, the contract with check-in apps (protocol.md), one module per idea of
the wire format (all pure):

=============  ============================================================================
``decode``     command payloads -> ``lobbypay.core.commands`` objects, ``ProtocolError``
``events``     the ``charge.event`` message: ``to_event``, ``check_event`` (section 5)
``retained``   the retained ``status`` and ``state`` messages (section 8)
``topics``     ``TOPIC_ROOT`` and ``Topics``: every topic of a terminal (sections 1, 10)
``envelope``   ``PROTOCOL_VERSION``, the one JSON encoder, the reply envelope (section 2)
``times``      timestamps: the protocol's whole seconds, the precise form, the parser
=============  ============================================================================

Import the names from here (``from lobbypay.core.protocol import Topics``). Each module
uses only those below it in the table, and none imports the job machine
(``core/job.py`` imports ``events``).
"""

from lobbypay.core.commands import COMMAND_TYPES
from lobbypay.core.protocol.decode import (
    DEADLINE_DEFAULT_S,
    DEADLINE_MAX_S,
    DEADLINE_MIN_S,
    EMAIL_MAX,
    EMAIL_MIN,
    ID_RE,
    JOB_ID_RE,
    LIST_DEFAULT,
    LIST_LIMIT_CEILING,
    LIST_MAX,
    MAX_CLAIMS,
    MAX_PAYLOAD_BYTES,
    REQUEST_ID_MAX,
    ProtocolError,
    decode_command,
    email_problem,
    peek_envelope,
)
from lobbypay.core.protocol.envelope import (
    PROTOCOL_VERSION,
    encode_json,
    encode_reply,
    error_reply,
    reply_object,
)
from lobbypay.core.protocol.events import (
    ERROR_STATES,
    EVENT_TYPE,
    FINAL_JOB_STATES,
    JOB_STATES,
    PAYMENT_STATES,
    EventSource,
    amounts_of,
    check_event,
    check_plain,
    to_event,
)
from lobbypay.core.protocol.retained import (
    IDLE,
    AthenaFault,
    AthenaState,
    ClockHealth,
    DisplayState,
    ReaderState,
    StatusObject,
    TerminalState,
    clock_health,
    state_object,
    status_object,
)
from lobbypay.core.protocol.times import format_seconds, format_time, parse_time
from lobbypay.core.protocol.topics import TOPIC_ROOT, Topics

__all__ = [
    "COMMAND_TYPES",
    "DEADLINE_DEFAULT_S",
    "DEADLINE_MAX_S",
    "DEADLINE_MIN_S",
    "EMAIL_MAX",
    "EMAIL_MIN",
    "ERROR_STATES",
    "EVENT_TYPE",
    "FINAL_JOB_STATES",
    "ID_RE",
    "IDLE",
    "JOB_ID_RE",
    "JOB_STATES",
    "LIST_DEFAULT",
    "LIST_LIMIT_CEILING",
    "LIST_MAX",
    "MAX_CLAIMS",
    "MAX_PAYLOAD_BYTES",
    "PAYMENT_STATES",
    "PROTOCOL_VERSION",
    "REQUEST_ID_MAX",
    "TOPIC_ROOT",
    "EventSource",
    "ProtocolError",
    "Topics",
    "amounts_of",
    "check_event",
    "check_plain",
    "decode_command",
    "email_problem",
    "encode_json",
    "encode_reply",
    "error_reply",
    "format_seconds",
    "format_time",
    "parse_time",
    "peek_envelope",
    "reply_object",
    "state_object",
    "AthenaFault",
    "AthenaState",
    "ClockHealth",
    "DisplayState",
    "ReaderState",
    "StatusObject",
    "TerminalState",
    "clock_health",
    "status_object",
    "to_event",
]
