"""docs/asyncapi.json: a well-formed AsyncAPI 3.0.0 document whose references resolve, whose
examples validate against the shipped JSON Schemas, and which covers every command and every
error code the agent has.

No PyPI package ships the AsyncAPI 3.0.0 meta-schema, so the structure AsyncAPI requires is
checked here by hand (required fields, allowed keys, channel/operation/message wiring)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import lobbypay
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from lobbypay import schemas
from lobbypay.core.commands import COMMAND_TYPES, STAFF_ONLY_TYPES
from lobbypay.core.errors import Code
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = ROOT / "docs" / "asyncapi.json"
SCHEMA_DIR = ROOT / "agent" / "lobbypay" / "schemas"
DOC: dict[str, Any] = json.loads(DOC_PATH.read_text("utf-8"))
MESSAGES: dict[str, Any] = DOC["components"]["messages"]
EXT = re.compile(r"^x-[\w\d.\-_]+$")
COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")


# --- helpers


def walk_refs(node: object, where: str = "") -> Iterator[tuple[str, str]]:
    """Every ``$ref`` value under ``node``, with the JSON pointer of the object holding it."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield where, ref
        for key, value in node.items():
            yield from walk_refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_refs(value, f"{where}/{i}")


def resolve_pointer(doc: object, pointer: str) -> object:
    """RFC 6901 (with the URI-fragment percent-decoding); raises ``LookupError`` on a miss."""
    if pointer in ("", "/"):
        return doc if pointer == "" else _step(doc, "")
    if not pointer.startswith("/"):
        raise LookupError(f"not a JSON pointer: {pointer!r}")
    node = doc
    for raw in unquote(pointer)[1:].split("/"):
        node = _step(node, raw.replace("~1", "/").replace("~0", "~"))
    return node


def _step(node: object, token: str) -> object:
    if isinstance(node, dict):
        if token not in node:
            raise LookupError(f"no key {token!r}")
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise LookupError(f"cannot step into {type(node).__name__} with {token!r}")


def local(ref: str) -> object:
    """A ``#/...`` reference inside the AsyncAPI document."""
    assert ref.startswith("#"), ref
    return resolve_pointer(DOC, ref[1:])


def payload_schema_pointer(name: str) -> str:
    payload = MESSAGES[name]["payload"]
    base = f"/components/messages/{name}/payload"
    return base + "/schema" if "schemaFormat" in payload else base


def external_kinds(node: object) -> set[str]:
    """Schema kinds (``"reply"``) a payload refers to by file."""
    kinds = set()
    for _, ref in walk_refs(node):
        file = ref.split("#", 1)[0]
        if file:
            kinds.add(Path(file).name.removesuffix(".json"))
    return kinds


def registry() -> Registry[Any]:
    """The AsyncAPI document and every schema file, under their file URIs (so the document's
    relative refs resolve as they do on disk) and the schemas' own ``$id``s."""
    resources = [(DOC_PATH.as_uri(), DRAFT202012.create_resource(DOC))]
    for name in schemas.schema_names():
        resource = Resource.from_contents(schemas.load(name))
        resources.append(((SCHEMA_DIR / name).as_uri(), resource))
        resources.append((schemas.BASE_URI + name, resource))
    reg: Registry[Any] = Registry().with_resources(resources)
    return reg


REGISTRY = registry()


def payload_validator(name: str) -> Draft202012Validator:
    wrapper = {"$ref": DOC_PATH.as_uri() + "#" + payload_schema_pointer(name)}
    return Draft202012Validator(
        wrapper, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def payload_errors(name: str, obj: object) -> list[str]:
    return [e.message for e in payload_validator(name).iter_errors(obj)]


EXAMPLES = [
    pytest.param(name, i, id=f"{name}:{ex.get('name', i)}")
    for name, message in MESSAGES.items()
    for i, ex in enumerate(message.get("examples", []))
]


# --- the document itself


def test_is_asyncapi_3_0_0_with_info() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    info = DOC["info"]
    assert info["title"]
    assert info["version"] == lobbypay.__version__
    assert "Protocol v1" in info["description"]
    assert DOC["defaultContentType"] == "application/json"


def test_top_level_and_object_keys_are_the_ones_asyncapi_3_allows() -> None:
    def check(obj: dict[str, Any], allowed: set[str], required: set[str], where: str) -> None:
        extra = {k for k in obj if k not in allowed and not EXT.match(k)}
        assert not extra, f"{where}: keys AsyncAPI 3.0.0 does not allow: {extra}"
        assert required <= obj.keys(), f"{where}: missing {required - obj.keys()}"

    check(DOC, {"asyncapi", "id", "info", "servers", "defaultContentType", "channels",
                "operations", "components"}, {"asyncapi", "info"}, "(top)")
    check(DOC["info"], {"title", "version", "description", "termsOfService", "contact",
                        "license", "tags", "externalDocs"}, {"title", "version"}, "info")
    for key, server in DOC["servers"].items():
        check(server, {"host", "protocol", "protocolVersion", "pathname", "description",
                       "title", "summary", "variables", "security", "tags", "externalDocs",
                       "bindings"}, {"host", "protocol"}, f"servers/{key}")
    for key, channel in DOC["channels"].items():
        check(channel, {"address", "messages", "title", "summary", "description", "servers",
                        "parameters", "tags", "externalDocs", "bindings"}, set(),
              f"channels/{key}")
    for key, op in DOC["operations"].items():
        check(op, {"action", "channel", "title", "summary", "description", "security", "tags",
                   "externalDocs", "bindings", "traits", "messages", "reply"},
              {"action", "channel"}, f"operations/{key}")
        assert op["action"] in ("send", "receive")
    for key, message in MESSAGES.items():
        check(message, {"headers", "payload", "correlationId", "contentType", "name", "title",
                        "summary", "description", "tags", "externalDocs", "bindings",
                        "examples", "traits"}, set(), f"components/messages/{key}")
        for ex in message.get("examples", []):
            check(ex, {"headers", "payload", "name", "summary"}, set(), f"{key} example")
    for section, entries in DOC["components"].items():
        for key in entries:
            assert COMPONENT_KEY.match(key), f"components/{section}/{key}"


def test_servers_broker_over_mqtt_and_secure_mqtt() -> None:
    servers = DOC["servers"]
    assert servers["broker"]["protocol"] == "mqtt"
    assert {s["protocol"] for s in servers.values()} == {"mqtt", "secure-mqtt"}
    for server in servers.values():
        names = set(re.findall(r"{([^}]+)}", server["host"]))
        assert "host" in names
        assert names == set(server["variables"]), "every host variable declared, and no others"
        assert server["x-mqtt-protocol-versions"] == ["3.1.1", "5"]
        assert "mqtt" in server["bindings"]


TOPICS = ("cmd", "reply", "events", "status", "state", "staff/cmd", "staff/reply")


def topic_of(channel: dict[str, Any]) -> str:
    return str(channel["address"]).removeprefix("lobbypay/v1/{terminal_id}/")


def test_channels_are_the_protocol_topics_with_terminal_id() -> None:
    """Sections 1 and 10: the five topics and the staff pair."""
    addresses = {c["address"] for c in DOC["channels"].values()}
    assert addresses == {f"lobbypay/v1/{{terminal_id}}/{t}" for t in TOPICS}
    for key, channel in DOC["channels"].items():
        names = set(re.findall(r"{([^}]+)}", channel["address"]))
        assert names == set(channel["parameters"]) == {"terminal_id"}, key


def test_operations_are_the_apps_view_with_mqtt_bindings() -> None:
    by_topic = {}
    for key, op in DOC["operations"].items():
        channel = local(op["channel"]["$ref"])
        assert isinstance(channel, dict)
        topic = topic_of(channel)
        by_topic[topic] = op
        binding = op["bindings"]["mqtt"]
        assert binding["qos"] == 1, key
        assert binding["retain"] is (topic in ("status", "state")), key
        assert op["action"] == ("send" if topic.endswith("cmd") else "receive"), key
        # operation messages must be messages of the operation's channel
        prefix = op["channel"]["$ref"] + "/messages/"
        for m in op["messages"]:
            assert m["$ref"].startswith(prefix), (key, m)
            local(m["$ref"])
    assert set(by_topic) == set(TOPICS)
    for cmd, reply_channel in (("cmd", "reply"), ("staff/cmd", "staffReply")):
        reply = by_topic[cmd]["reply"]
        assert reply["channel"]["$ref"] == f"#/channels/{reply_channel}"
        assert {m["$ref"] for m in reply["messages"]} == {
            f"#/channels/{reply_channel}/messages/replyOk",
            f"#/channels/{reply_channel}/messages/replyError"}


def test_every_message_is_used_by_a_channel_and_an_operation() -> None:
    in_channels = {r["$ref"] for c in DOC["channels"].values() for r in c["messages"].values()}
    assert in_channels == {f"#/components/messages/{m}" for m in MESSAGES}
    in_ops = {local(r["$ref"])["$ref"]  # type: ignore[index]
              for op in DOC["operations"].values() for r in op["messages"]}
    assert in_ops == in_channels


# --- references


def test_every_ref_resolves_to_a_file_and_pointer() -> None:
    """The document's refs, and transitively the refs inside the schema files they reach."""
    pending = [DOC_PATH]
    seen: set[Path] = set()
    checked = 0
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        doc = json.loads(path.read_text("utf-8"))
        for where, ref in walk_refs(doc):
            file, _, pointer = ref.partition("#")
            target = (path.parent / file).resolve() if file else path
            assert target.is_file(), f"{path.name}{where}: {ref} -> no file {target}"
            try:
                resolve_pointer(json.loads(target.read_text("utf-8")), pointer)
            except LookupError as e:
                raise AssertionError(f"{path.name}{where}: {ref}: {e}") from None
            if file:
                pending.append(target)
            checked += 1
    assert checked > 50
    assert {p.name for p in seen} >= {f"{k}.json" for k in schemas.KINDS} | {"_defs.json"}


def test_payloads_reference_the_shipped_schema_files_not_copies() -> None:
    for name, message in MESSAGES.items():
        payload = message["payload"]
        assert payload["schemaFormat"] == "application/schema+json;version=2020-12"
        kinds = external_kinds(payload)
        assert len(kinds) == 1, name
        for _, ref in walk_refs(payload):
            file = ref.split("#", 1)[0]
            if file:
                target = (DOC_PATH.parent / file).resolve()
                assert target.parent == SCHEMA_DIR, ref
                assert json.loads(target.read_text("utf-8")) == schemas.load(target.name)
        # no schema body copied in: nothing but the ref and a few narrowing keywords
        text = json.dumps(payload)
        assert "$defs" not in text and "pattern" not in text, name


def test_every_command_type_has_a_message_on_cmd_and_staff_cmd() -> None:
    """Section 10: every command works on staff/cmd; charge.void only there."""
    on_cmd = [local(r["$ref"]) for r in DOC["channels"]["cmd"]["messages"].values()]
    names = [m["name"] for m in on_cmd]  # type: ignore[index]
    assert sorted(names) == sorted(set(COMMAND_TYPES) - STAFF_ONLY_TYPES)
    on_staff = [local(r["$ref"]) for r in DOC["channels"]["staffCmd"]["messages"].values()]
    assert sorted(m["name"] for m in on_staff) == sorted(COMMAND_TYPES)  # type: ignore[index]
    for message in on_cmd + on_staff:
        assert isinstance(message, dict)
        assert external_kinds(message["payload"]) == {message["name"]}


# --- examples


@pytest.mark.parametrize(("name", "index"), EXAMPLES)
def test_example_validates_against_its_referenced_schema(name: str, index: int) -> None:
    message = MESSAGES[name]
    example = message["examples"][index]["payload"]
    assert payload_errors(name, example) == []
    for kind in external_kinds(message["payload"]):
        assert schemas.errors(kind, example) == []
    if name in {m["$ref"].rsplit("/", 1)[1]
                for m in DOC["channels"]["cmd"]["messages"].values()}:
        assert example["type"] == message["name"]


def test_every_message_has_an_example_and_replies_cover_every_command() -> None:
    for name, message in MESSAGES.items():
        assert message.get("examples"), name
    ok_commands = {ex["payload"]["command"] for ex in MESSAGES["replyOk"]["examples"]}
    assert ok_commands == set(COMMAND_TYPES)


def test_protocol_md_examples_are_included_verbatim() -> None:
    """The examples protocol.md itself gives (sections 4 and 5) are in the document."""
    spec_start = {
        "v": 1, "type": "charge.start", "request_id": "r-1", "job_id": "j-1",
        "patient_id": "60178", "department_id": "1", "appointment_id": "1234",
        "copay": "25.00", "claims": [{"claim_id": "5569", "amount": "40.00"}],
        "allow_duplicate": False, "deadline_s": 120, "expires_at": "2026-11-27T15:00:00Z",
    }
    spec_event = {
        "v": 1, "type": "charge.event", "job_id": "j-1", "seq": 4, "state": "succeeded",
        "final": True, "at": "2026-11-27T14:03:07Z",
        "card": {"brand": "visa", "last4": "1111"},
        "amounts": {"copay": "25.00", "other": "40.00", "total": "65.00",
                    "claims": [{"claim_id": "5569", "amount": "40.00"}]},
        "epayment_id": "123456", "error": None,
    }
    def payloads(name: str) -> list[Any]:
        return [ex["payload"] for ex in MESSAGES[name]["examples"]]
    assert spec_start in payloads("chargeStart")
    assert spec_event in payloads("chargeEvent")
    balance = next(p for p in payloads("replyOk") if p["command"] == "balance.get")
    assert balance["collectible_total"] == "40.00"
    assert balance["copay"] == {"expected": "25.00"}


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("replyOk", {"ok": False}),
        ("replyError", {"ok": True}),
        ("replyError", {"error": None}),
        ("chargeStart", {"copay": 25.0}),
        ("chargeStart", {"type": "charge.cancel"}),
        ("chargeEvent", {"card": {"brand": "visa", "last4": "4111111111111111"}}),
        ("status", {"online": "yes"}),
        ("state", {"outbox": -1}),
    ],
)
def test_payload_schema_rejects_a_broken_example(name: str, change: dict[str, Any]) -> None:
    """The validation above has teeth: a broken copy of an example fails it."""
    example = copy.deepcopy(MESSAGES[name]["examples"][0]["payload"])
    example.update(change)
    assert payload_errors(name, example)


def test_reply_messages_narrow_reply_json_to_ok_and_error() -> None:
    """replyOk/replyError are reply.json plus an ``ok`` constraint: a reply that is valid
    reply.json is still refused by the other message."""
    error_as_ok = {"v": 1, "type": "reply", "request_id": "c-1", "command": "charge.cancel",
                   "ok": False, "error": {"code": "too_late", "message": "a card was read"}}
    ok_cancel = {"v": 1, "type": "reply", "request_id": "c-1", "command": "charge.cancel",
                 "ok": True}
    for reply in (error_as_ok, ok_cancel):
        assert schemas.errors("reply", reply) == []
    assert payload_errors("replyError", error_as_ok) == []
    assert payload_errors("replyOk", error_as_ok)
    assert payload_errors("replyOk", ok_cancel) == []
    assert payload_errors("replyError", ok_cancel)


# --- error codes


def test_error_code_enum_is_exactly_lobbypays_codes() -> None:
    enum = DOC["components"]["schemas"]["errorCode"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(enum) == {c.value for c in Code}


def test_every_error_code_in_an_example_is_in_the_enum() -> None:
    enum = set(DOC["components"]["schemas"]["errorCode"]["enum"])
    found = set()
    for message in MESSAGES.values():
        for ex in message["examples"]:
            for obj in [ex["payload"], ex["payload"].get("job"), *ex["payload"].get("jobs", [])]:
                if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
                    found.add(obj["error"]["code"])
    assert found
    assert found <= enum


def test_developer_doc_links_the_asyncapi_document() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text("utf-8")
    assert "(asyncapi.json)" in text
