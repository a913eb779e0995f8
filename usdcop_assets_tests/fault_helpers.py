"""Fault injection for the operations tests: a loopback TCP proxy that can cut or refuse connections
at a chosen point of the traffic it relays, with triggers that understand the PostgreSQL wire
protocol (client side) and S3's HTTP requests.

The proxy sits between a client (psycopg, boto3) and a real server (PostgreSQL, moto). Until a
trigger fires it relays bytes unchanged. When it fires, the proxy closes the server side first (so
the server sees the peer vanish exactly there), then the client side, and goes *down*: every new
connection is accepted and closed at once, as a dead service behind a load balancer would be, until
``up()`` is called. The port never changes, so clients keep their configuration across the outage.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

# -- the proxy --------------------------------------------------------------------------------------


class _Cut(Exception):
    """Raised by a trigger: forward ``prefix`` bytes of the current chunk, then cut everything."""

    def __init__(self, prefix: bytes = b""):
        super().__init__("cut")
        self.prefix = prefix


@dataclass
class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target`` (host, port).

    ``trigger`` builds one inspector per connection: ``inspector(chunk) -> bytes`` returns the bytes
    to forward to the server (normally ``chunk``) or raises :class:`_Cut` to cut the traffic there.
    """

    target: tuple[str, int]
    trigger: Callable[[], Callable[[bytes], bytes]] | None = None
    tripped: threading.Event = field(default_factory=threading.Event)
    connections: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._down = False
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    @property
    def is_down(self) -> bool:
        return self._down

    def down(self) -> None:
        """Cut every open connection and refuse (accept-and-close) new ones."""
        with self._lock:
            self._down = True
            pairs, self._pairs = self._pairs, []
        for server, client in pairs:
            _close(server)
            _close(client)

    def up(self) -> None:
        """Relay again; the trigger stays spent (it fires once)."""
        with self._lock:
            self._down = False

    def close(self) -> None:
        self._closed = True
        self.down()
        _close(self._listener)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # internals
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.append((server, client))
                self.connections += 1
            inspector = self.trigger() if self.trigger is not None else None
            threading.Thread(target=self._pump, args=(client, server, inspector), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket, inspector) -> None:
        socks = [client, server]
        try:
            while True:
                readable, _, _ = select.select(socks, [], [], 0.5)
                if self._closed:
                    return
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        if inspector is not None and not self.tripped.is_set():
                            try:
                                data = inspector(data)
                            except _Cut as cut:
                                if cut.prefix:
                                    server.sendall(cut.prefix)
                                self.tripped.set()
                                _close(server)  # the server sees its peer vanish here
                                self.down()
                                return
                        server.sendall(data)
                    else:
                        client.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            _close(client)
            _close(server)
            with self._lock:
                self._pairs = [p for p in self._pairs if p[0] is not server]


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


# -- PostgreSQL: cut a write of one table ------------------------------------------------------------

_SSL_CODES = {80877103, 80877104}  # SSLRequest, GSSENCRequest: answered by one byte, then the startup


class Cutter:
    """A per-connection inspector factory that acts only while ``armed`` is set (connections opened
    before arming, e.g. pooled ones, are inspected from their first byte so they can be cut too)."""

    def __init__(self, factory: Callable[[Cutter], Callable[[bytes], bytes]]):
        self.armed = threading.Event()
        self._factory = factory

    def __call__(self) -> Callable[[bytes], bytes]:
        return self._factory(self)


def pg_write_cut(table: str, at: str) -> Cutter:
    """A trigger for the first transaction on a connection that writes ``table`` (``COPY "table"`` or
    ``INSERT INTO "table"``, as ``Warehouse.upsert`` issues them):

    - ``at="copy"``: cut in the middle of the first CopyData message of a ``COPY "table"`` (half of it
      reaches the server);
    - ``at="commit"``: swallow that transaction's ``COMMIT`` and cut: every statement of the write ran
      on the server, the commit never arrived.
    """
    if at not in ("copy", "commit"):
        raise ValueError(at)
    write_re = re.compile(rb'(COPY|INSERT INTO) "' + re.escape(table.encode()) + rb'"', re.I)
    copy_re = re.compile(rb'COPY "' + re.escape(table.encode()) + rb'"', re.I)

    def factory(cutter: Cutter):
        buf = bytearray()
        state = {"startup": True, "armed": False, "copying": False}

        def inspect(chunk: bytes) -> bytes:
            buf.extend(chunk)
            out = bytearray()
            while True:
                if state["startup"]:
                    if len(buf) < 8:
                        break
                    length, code = struct.unpack("!II", bytes(buf[:8]))
                    if len(buf) < length:
                        break
                    out += buf[:length]
                    del buf[:length]
                    if code not in _SSL_CODES:
                        state["startup"] = False
                    continue
                if len(buf) < 5:
                    break
                kind = bytes(buf[:1])
                length = struct.unpack("!I", bytes(buf[1:5]))[0]
                total = 1 + length
                if kind == b"d" and state["copying"] and at == "copy" and cutter.armed.is_set():
                    # cut inside this CopyData message once part of it has arrived
                    half = max(6, min(len(buf), total) // 2)
                    raise _Cut(bytes(out) + bytes(buf[:half]))
                if len(buf) < total:
                    break
                message = bytes(buf[:total])
                body = message[5:]
                if kind in (b"Q", b"P"):
                    if kind == b"P":  # Parse: statement name, then the query text
                        body = body.split(b"\x00", 1)[-1]
                    if write_re.search(body) and cutter.armed.is_set():
                        state["armed"] = True
                        state["copying"] = bool(copy_re.search(body))
                    elif at == "commit" and state["armed"] and body.lstrip(b" \x00").upper().startswith(b"COMMIT"):
                        raise _Cut(bytes(out))
                out += message
                del buf[:total]
            return bytes(out)

        return inspect

    return Cutter(factory)


# -- S3 over HTTP: cut at a request for a key ----------------------------------------------------------


def http_request_cut(method: str, path_pattern: str) -> Cutter:
    """A trigger that cuts before the server sees a request ``METHOD <path matching path_pattern>``
    (searched in the request line; object bodies are binary Parquet and never contain it)."""
    request_re = re.compile(
        rb"(?:^|\r\n)" + method.encode() + rb" (" + path_pattern.encode() + rb")[^ ]* HTTP/1\.[01]\r\n"
    )

    def factory(cutter: Cutter):
        tail = bytearray()

        def inspect(chunk: bytes) -> bytes:
            window = bytes(tail) + chunk
            match = request_re.search(window)
            if match and cutter.armed.is_set():
                start = match.start() + (2 if window[match.start() : match.start() + 2] == b"\r\n" else 0)
                keep = max(0, start - len(tail))  # bytes of this chunk before the request line
                raise _Cut(chunk[:keep])
            tail[:] = window[-512:]
            return chunk

        return inspect

    return Cutter(factory)
