"""Tools of the API attack and fault tests: the error-shape check, raw sockets for what no client library sends."""

from __future__ import annotations

import os
import socket

import httpx

from tests.services.api_server import ApiServer

UPGRADE_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
ERROR_KEYS = {"error", "message", "code"}


def refused(response: httpx.Response, status: int, code: str) -> dict:
    """The body of an error answer after checking its status, its one shape and its code."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == ERROR_KEYS and body["code"] == code and body["message"], body
    assert "Traceback" not in response.text and "/tmp/" not in response.text, body
    return body


def raw_request(server: ApiServer, head: str, headers: dict[str, str | bytes], *,
                receive_buffer: int | None = None) -> socket.socket:
    """A socket that has sent `head` (e.g. "GET /api/pipelines/runs HTTP/1.1") and `headers`, and nothing else;
    `receive_buffer` shrinks its kernel buffer (set before connecting, so the window the peer sees is small)."""
    connection = socket.socket()
    connection.settimeout(10)
    if receive_buffer:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    connection.connect(("127.0.0.1", server.port))
    lines = [f"{head}\r\nHost: 127.0.0.1:{server.port}\r\n".encode()]
    lines += [name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
              for name, value in headers.items()]
    connection.sendall(b"".join(lines) + b"\r\n")
    return connection


def read_all(connection: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the peer sends until it closes (or `timeout` passes without a byte)."""
    connection.settimeout(timeout)
    chunks = []
    try:
        while chunk := connection.recv(1 << 16):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def ws_handshake(server: ApiServer, run_id: int, headers: dict[str, str | bytes], query: str = "") -> bytes:
    """What the server answers a WebSocket upgrade of the run's log stream with: the status line and all that
    follows until it closes, or just the status line of an accepted upgrade (the socket is then closed)."""
    with raw_request(server, f"GET /api/pipelines/runs/{run_id}/ws{query} HTTP/1.1",
                     {**UPGRADE_HEADERS, **headers}) as connection:
        answer = connection.recv(1 << 16)
        if answer.startswith(b"HTTP/1.1 101"):
            return answer.split(b"\r\n")[0]
        return answer + read_all(connection, timeout=5)


def peak_rss_mib(server: ApiServer) -> int:
    """The server process's peak resident memory so far (VmHWM), in MiB."""
    assert server.process is not None
    with open(f"/proc/{server.process.pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmHWM"].split()[0]) // 1024


def cpu_seconds(server: ApiServer) -> float:
    """CPU time the server process has used so far (user + system, all its threads)."""
    assert server.process is not None
    with open(f"/proc/{server.process.pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
