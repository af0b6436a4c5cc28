"""The athena client builds each request itself (``AthenaClient._request``): byte for byte
what httpx's ``build_request`` makes for athena's calls, without its URL and cookie
merging."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lobbypay.shell.athena import AthenaClient

URL = "https://api.example.test/v1/195900/patients/1234"
HEADERS = {"Authorization": "Bearer tok", "X-Request-Id": "0f1e2d3c"}
TIMEOUT = httpx.Timeout(7.0, connect=3.0)


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"Accept": "application/json", "User-Agent": "lobbypay/test"},
        timeout=httpx.Timeout(20.0, connect=5.0), follow_redirects=False)


def same(a: httpx.Request, b: httpx.Request) -> None:
    assert b.method == a.method
    assert b.url == a.url
    assert b.url.raw_path == a.url.raw_path
    assert b.headers.raw == a.headers.raw
    assert b.extensions == a.extensions
    assert b.read() == a.read()


@pytest.mark.parametrize(
    ("method", "params", "data", "content"),
    [
        ("GET", {"showbalancedetails": "true", "departmentid": "1"}, None, None),
        ("GET", None, None, None),
        ("POST", None, None, b"copayamount=25.00&trackdata=%25B4111"),
        ("POST", None, {"epaymentid": "123", "email": "a+b@example.test"}, None),
    ],
)
def test_request_is_what_build_request_makes(method: str, params: dict[str, str] | None,
                                             data: dict[str, str] | None,
                                             content: bytes | None) -> None:
    http = client()
    headers = dict(HEADERS)
    if content is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    expected = http.build_request(method, URL, params=params, data=data, content=content,
                                  headers=headers, timeout=TIMEOUT)
    same(expected, AthenaClient._request(http, method, URL, params, data, content, headers,
                                         TIMEOUT))


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=4))
def test_query_encoding_matches_httpx(params: dict[str, str]) -> None:
    """Dates (``12/03/2026``), spaces, plus signs and any other text: the query is
    encoded exactly as httpx encodes ``params``."""
    http = client()
    expected = http.build_request("GET", URL, params=params, headers=HEADERS, timeout=TIMEOUT)
    same(expected, AthenaClient._request(http, "GET", URL, params, None, None, dict(HEADERS),
                                         TIMEOUT))
