"""Commands name their wire type at class level (lobbypay.core.commands)."""

from __future__ import annotations

import dataclasses
import typing

from lobbypay.core import commands as c


def test_every_command_class_names_a_distinct_type() -> None:
    assert set(c.COMMAND_CLASSES) == set(typing.get_args(c.Command))
    types = [cls.type for cls in c.COMMAND_CLASSES]
    assert len(set(types)) == len(types)
    assert c.COMMAND_TYPES == tuple(types)
    assert c.STAFF_ONLY_TYPES == {c.ChargeVoid.type} <= set(types)


def test_the_type_is_not_a_field() -> None:
    # a command is built from its fields only; its type comes with its class
    for cls in c.COMMAND_CLASSES:
        assert "type" not in {f.name for f in dataclasses.fields(cls)}
    ping = c.Ping(request_id="r-1")
    assert ping.type == "ping" and ping == c.Ping("r-1")
