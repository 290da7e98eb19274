"""Malformed HTTP on the wire, below any JSON body: what uvicorn's HTTP parser (h11; httptools and uvloop
were measured and not kept, bench/README.md) refuses itself is a 400 that closes the connection, never a
5xx or a hang; what it lets through reaches the app and gets the JSON error contract; and the server keeps
answering."""

import json
import socket

import pytest
import requests

from tests.conftest import PENGUIN

pytestmark = pytest.mark.served
BODY = json.dumps(PENGUIN).encode()


def exchange(server, raw: bytes, half_close: bool = False) -> tuple[int, bytes]:
    """Send raw bytes on a fresh connection; (status, body) of the first answer, (0, b"") when the server
    closed it without one. The server must answer or close within the timeout: a hang fails the test."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)  # no more bytes: a server waiting for them must answer or close now
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    if not received:
        return 0, b""
    assert received.startswith(b"HTTP/1.1 "), received[:200]
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


REFUSED_BY_THE_PARSER = [  # each a complete request: the server answers without waiting for more
    ("garbage-request-line", b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n"),
    ("space-in-header-name", b"POST /predict HTTP/1.1\r\nHost: x\r\nContent Type: application/json\r\n\r\n"),
    ("content-length-not-a-number", b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n" + BODY),
    ("two-content-lengths", b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n{}}}"),
    ("bad-chunk-size", b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
]


@pytest.mark.parametrize("case", REFUSED_BY_THE_PARSER, ids=[c[0] for c in REFUSED_BY_THE_PARSER])
def test_the_parser_refuses_malformed_http_with_a_400(layout_server, case):
    status, _ = exchange(layout_server, case[1])
    assert status == 400


def test_a_body_shorter_than_its_content_length_is_not_a_hang(layout_server):
    status, body = exchange(
        layout_server,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 500\r\n\r\n" + BODY[:20],
        half_close=True,
    )
    assert 400 <= status < 500 or status == 0, body[:200]


def test_a_chunked_body_is_read_whole(layout_server):
    half = len(BODY) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (BODY[:half], BODY[half:])) + b"0\r\n\r\n"
    status, body = exchange(
        layout_server,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks,
    )
    assert status == 200 and json.loads(body)["prediction"] == "Gentoo", body[:300]


def test_a_truncated_json_body_gets_the_json_error_contract(layout_server):
    cut = BODY[:-5]
    status, body = exchange(
        layout_server,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(cut), cut),
    )
    assert status == 400, body[:300]
    answer = json.loads(body)
    assert answer["error"] and "Traceback" not in answer["error"], answer


def test_still_answering_after_the_malformed_requests(layout_server):
    response = requests.post(f"{layout_server.url}/predict", json=PENGUIN, timeout=30)
    assert response.status_code == 200 and response.json()["prediction"] == "Gentoo"
