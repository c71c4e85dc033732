"""The console proxy from a test's side, with the standard library only: open the websocket a
noVNC console URL points at (as noVNC's vnc_lite.html does) and read the VNC server's greeting.

A console URL is `<base>/novnc/vnc_lite.html?path=novnc%2Fwebsockify%3Ftoken%3D<token>`;
noVNC connects to `ws(s)://<page's host:port>/<path>`, and so do these helpers."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import urllib.parse

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def websocket_target(console_url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, resource) of the websocket a console URL's page opens. A URL
    without `path` (e.g. `<base>/novnc/websockify?token=T`) is taken as the websocket itself."""
    u = urllib.parse.urlsplit(console_url)
    port = u.port or (443 if u.scheme == "https" else 80)
    paths = urllib.parse.parse_qs(u.query).get("path")
    if paths is None:
        return u.scheme, u.hostname or "", port, u.path + (f"?{u.query}" if u.query else "")
    return u.scheme, u.hostname or "", port, "/" + paths[-1].lstrip("/")


def _open(console_url: str, timeout: float, origin: str | None = None):
    """Send the upgrade request; returns (socket, status, headers, key, bytes after the head)."""
    scheme, host, port, resource = websocket_target(console_url)
    sock = socket.create_connection((host, port), timeout=timeout)
    if scheme == "https":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    key = base64.b64encode(os.urandom(16)).decode()
    head = (f"GET {resource} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: binary\r\n" + (f"Origin: {origin}\r\n" if origin else "") + "\r\n")
    sock.sendall(head.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    raw, _, rest = data.partition(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return sock, status, headers, key, rest


def _read_exact(sock, n: int, buf: bytearray) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def _read_frame(sock, buf: bytearray) -> tuple[int, bytes]:
    """One server frame (unmasked, as RFC 6455 requires of servers): (opcode, payload)."""
    b0, b1 = _read_exact(sock, 2, buf)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _read_exact(sock, 2, buf))
    elif length == 127:
        (length,) = struct.unpack("!Q", _read_exact(sock, 8, buf))
    assert not b1 & 0x80, "a server frame must not be masked"
    return b0 & 0x0F, _read_exact(sock, length, buf)


def _close_frame() -> bytes:
    """A masked close frame (client frames are masked), status 1000."""
    mask = os.urandom(4)
    payload = struct.pack("!H", 1000)
    return bytes([0x88, 0x80 | len(payload)]) + mask + bytes(p ^ mask[i % 4] for i, p in enumerate(payload))


def rfb_handshake(url: str, timeout: float = 10, origin: str | None = None) -> bytes:
    """Open the console URL's websocket, check the upgrade (101, Sec-WebSocket-Accept, the
    `binary` subprotocol), and return the payload of the server's first frame, which must be
    binary: the VNC server's `RFB 003.008\\n`. Closes the connection cleanly."""
    sock, status, headers, key, rest = _open(url, timeout, origin)
    try:
        assert status == 101, f"websocket upgrade refused: {status} {headers} {rest[:500]!r}"
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert headers.get("sec-websocket-accept") == want, headers
        assert headers.get("sec-websocket-protocol") == "binary", headers
        opcode, payload = _read_frame(sock, bytearray(rest))
        assert opcode == 2, f"expected a binary frame, got opcode {opcode}: {payload[:100]!r}"
        try:
            sock.sendall(_close_frame())
        except OSError:
            pass
        return payload
    finally:
        sock.close()


def websocket_status(url: str, timeout: float = 10, origin: str | None = None) -> int:
    """The HTTP status the console URL's websocket upgrade gets (101 when accepted); `origin`:
    the Origin header a browser would send (none by default, as a non-browser client)."""
    sock, status, _headers, _key, _rest = _open(url, timeout, origin)
    sock.close()
    return status
