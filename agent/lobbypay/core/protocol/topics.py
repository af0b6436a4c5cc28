"""The topics of a terminal (protocol.md 1 and 10), built in one place (pure).

``Topics.of("lobby-1")`` gives every topic of terminal ``lobby-1``::

    prefix       lobbypay/v1/lobby-1
    cmd          lobbypay/v1/lobby-1/cmd           app -> agent
    reply        lobbypay/v1/lobby-1/reply         agent -> app
    events       lobbypay/v1/lobby-1/events        agent -> app
    status       lobbypay/v1/lobby-1/status        agent -> app, retained (and the will)
    state        lobbypay/v1/lobby-1/state         agent -> app, retained
    staff_cmd    lobbypay/v1/lobby-1/staff/cmd     staff app -> agent
    staff_reply  lobbypay/v1/lobby-1/staff/reply   agent -> staff app

``site`` puts a bridged site's prefix in front (``<site>/lobbypay/v1/...``: a central
broker's view, docs/OPERATIONS.md); ``"+"`` as the terminal or the site is the MQTT
wildcard (the client's ``fleet``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lobbypay.core.protocol.envelope import PROTOCOL_VERSION

#: Every topic of every terminal starts here (the ``v1`` is ``PROTOCOL_VERSION``).
TOPIC_ROOT = "lobbypay/v1"
assert TOPIC_ROOT.endswith(f"/v{PROTOCOL_VERSION}")


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one terminal; see the module docstring."""

    prefix: str
    cmd: str
    reply: str
    events: str
    status: str
    state: str
    staff_cmd: str
    staff_reply: str

    @classmethod
    def of(cls, terminal_id: str, *, site: str | None = None) -> Topics:
        prefix = f"{TOPIC_ROOT}/{terminal_id}"
        if site is not None:
            prefix = f"{site}/{prefix}"
        return cls(
            prefix=prefix,
            cmd=f"{prefix}/cmd",
            reply=f"{prefix}/reply",
            events=f"{prefix}/events",
            status=f"{prefix}/status",
            state=f"{prefix}/state",
            staff_cmd=f"{prefix}/staff/cmd",
            staff_reply=f"{prefix}/staff/reply",
        )

    def by_name(self) -> dict[str, str]:
        """``{"cmd": ..., "staff/cmd": ...}``: each topic under its name in protocol.md (the
        part after the prefix), in the contract's order."""
        return {
            "cmd": self.cmd,
            "reply": self.reply,
            "events": self.events,
            "status": self.status,
            "state": self.state,
            "staff/cmd": self.staff_cmd,
            "staff/reply": self.staff_reply,
        }
