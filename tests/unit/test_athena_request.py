"""The athena client builds each request itself (``AthenaClient._call``, an
``http11.Call``): the method, target, headers and body that httpx's ``build_request``
makes for the same call, without httpx's request object; and nothing for another origin."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lobbypay.shell.athena import CONNECT_TIMEOUT_S, AthenaClient
from lobbypay.shell.athena_form import form_body
from lobbypay.shell.http11 import Call

BASE = "https://api.example.test"
URL = f"{BASE}/v1/195900/patients/1234"
TOKEN, RID = "tok", "0f1e2d3c"
#: httpx's own choices, not athena's: its keep-alive header (HTTP/1.1's default anyway)
#: and the codings it accepts (which depend on what else is installed)
HTTPX_ONLY = {b"connection", b"accept-encoding"}


def athena() -> AthenaClient:
    return AthenaClient(BASE, "195900", "id", "secret", timeout_s=7.0)


def expected(c: AthenaClient, method: str, url: str, params: dict[str, str] | None = None,
             data: dict[str, str] | None = None, content: bytes | None = None) -> httpx.Request:
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Request-Id": RID}
    if content is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return c._http.build_request(method, url, params=params, data=data,  # noqa: SLF001
                                 content=content, headers=headers)


def same(want: httpx.Request, got: Call) -> None:
    assert got.method == want.method.encode()
    assert got.target == want.url.raw_path
    assert got.headers[0] == (b"host", want.headers.raw[0][1])  # Host first, as httpx

    def named(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return sorted((k.lower(), v) for k, v in raw if k.lower() not in HTTPX_ONLY)

    assert named(got.headers) == named(list(want.headers.raw))
    assert bytes(got.body) == want.read()


@pytest.mark.parametrize(
    ("method", "params", "data", "content"),
    [
        ("GET", {"showbalancedetails": "true", "departmentid": "1"}, None, None),
        ("GET", None, None, None),
        ("POST", None, None, b"copayamount=25.00&trackdata=%25B4111"),
        ("POST", None, {"epaymentid": "123", "email": "a+b@example.test"}, None),
    ],
)
def test_the_call_is_what_build_request_makes(method: str, params: dict[str, str] | None,
                                              data: dict[str, str] | None,
                                              content: bytes | None) -> None:
    c = athena()
    # the client encodes a form (data) into its own buffer (form_body) before the call
    body = bytearray(content) if content is not None else None
    if data is not None:
        body = form_body(data)
    same(expected(c, method, URL, params, data, content),
         c._call(method, URL, params, TOKEN, RID, body, 30.0))  # noqa: SLF001


def test_the_bounds_are_the_calls() -> None:
    c = athena()
    call = c._call("GET", URL, None, TOKEN, RID, None, 30.0)  # noqa: SLF001
    assert (call.read_s, call.write_s, call.connect_s) == (7.0, 7.0, CONNECT_TIMEOUT_S)
    call = c._call("GET", URL, None, TOKEN, RID, None, 1.5)  # noqa: SLF001 - deadline near
    assert (call.read_s, call.write_s, call.connect_s) == (1.5, 1.5, 1.5)


def test_a_next_link_keeps_its_query_and_another_origin_is_refused() -> None:
    c = athena()
    nxt = f"{BASE}/v1/195900/patients/1/receipts?offset=100&limit=100"
    same(expected(c, "GET", nxt), c._call("GET", nxt, None, TOKEN, RID, None, 30.0))  # noqa: SLF001
    for elsewhere in ("http://api.example.test/v1/x", "https://evil.test/v1/x",
                      "https://api.example.test:8443/v1/x"):
        with pytest.raises(httpx.UnsupportedProtocol):  # nothing sent
            c._call("GET", elsewhere, None, TOKEN, RID, None, 30.0)  # noqa: SLF001


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=4))
def test_query_encoding_matches_httpx(params: dict[str, str]) -> None:
    """Dates (``12/03/2026``), spaces, plus signs and any other text: the query is
    encoded exactly as httpx encodes ``params``."""
    c = athena()
    same(expected(c, "GET", URL, params),
         c._call("GET", URL, params, TOKEN, RID, None, 30.0))  # noqa: SLF001
