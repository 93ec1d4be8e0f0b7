"""The lab DNS server: answers A queries for cluster names from a resolve() callback."""

from __future__ import annotations

import asyncio
import random
import select
import socket
import struct
import threading
from typing import Callable, List, Optional, Tuple

Resolve = Callable[[str], List[str]]

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP = 0, 1, 2, 3, 4
TTL_S = 1  # lab addresses change as pods come and go; never let a resolver cache them long
MAX_UDP = 512  # classic DNS-over-UDP limit; answers that would not fit are dropped

_QR, _AA, _RD, _RA = 0x8000, 0x0400, 0x0100, 0x0080
_NAME_POINTER = b"\xc0\x0c"  # "the name at offset 12", i.e. the question's name


def normalize(name: str) -> str:
    """'Ratings.Default.' -> 'ratings.default'."""
    return name.strip().rstrip(".").lower()


def encode_name(name: str) -> bytes:
    """'ratings.default' -> wire-format labels."""
    labels = [label for label in normalize(name).split(".") if label]
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\0"


def read_name(data: bytes, pos: int) -> Tuple[str, int]:
    """Decode the (possibly compressed) name at `pos`; return it and the offset after it."""
    labels, end, jumps = [], None, 0
    while True:
        length = data[pos]
        if length >= 0xC0:
            jumps += 1
            if jumps > 16:
                raise ValueError("DNS name compression loop")
            end = pos + 2 if end is None else end
            pos = ((length & 0x3F) << 8) | data[pos + 1]
            continue
        if length == 0:
            return ".".join(labels), (pos + 1 if end is None else end)
        labels.append(data[pos + 1:pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length


def _header(query_id: int, flags: int, rcode: int, questions: int, answers: int) -> bytes:
    return struct.pack("!6H", query_id, _QR | _AA | _RA | (flags & _RD) | rcode,
                       questions, answers, 0, 0)


def _a_record(ip: str) -> Optional[bytes]:
    try:
        address = socket.inet_aton(ip)
    except OSError:
        return None
    return _NAME_POINTER + struct.pack("!HHIH", TYPE_A, CLASS_IN, TTL_S, 4) + address


def answer(query: bytes, resolve: Resolve) -> Optional[bytes]:
    """The reply to one query packet, or None when the packet deserves no reply."""
    if len(query) < 12:
        return None
    query_id, flags, questions = struct.unpack("!3H", query[:6])
    if flags & _QR:  # a response, not a query
        return None
    if (flags >> 11) & 0xF:  # only standard queries (opcode 0)
        return _header(query_id, flags, NOTIMP, 0, 0)
    try:
        if questions != 1:
            raise ValueError("expected exactly one question")
        name, end = read_name(query, 12)
        qtype, _ = struct.unpack("!HH", query[end:end + 4])
    except (IndexError, ValueError, struct.error):
        return _header(query_id, flags, FORMERR, 0, 0)
    question = query[12:end + 4]
    if qtype != TYPE_A:
        # AAAA and the rest: "no records of that type" so resolvers fall back to A cleanly.
        return _header(query_id, flags, NOERROR, 1, 0) + question
    try:
        ips = list(resolve(normalize(name))) if normalize(name) else []
    except Exception:  # a broken resolver must not take the DNS server down
        return _header(query_id, flags, SERVFAIL, 1, 0) + question
    records = [r for r in map(_a_record, ips) if r]
    room = (MAX_UDP - 12 - len(question)) // 16
    records = records[:room]
    rcode = NOERROR if records else NXDOMAIN
    return _header(query_id, flags, rcode, 1, len(records)) + question + b"".join(records)


def build_query(name: str, qtype: int = TYPE_A, query_id: int = 0) -> bytes:
    """A standard recursive query packet for one name."""
    return struct.pack("!6H", query_id, _RD, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def parse_response(data: bytes) -> Tuple[int, int, List[Tuple[int, int, bytes]]]:
    """(query id, rcode, [(type, ttl, rdata), ...]) of a response packet."""
    query_id, flags, questions, answers = struct.unpack("!4H", data[:8])
    pos = 12
    for _ in range(questions):
        pos = read_name(data, pos)[1] + 4
    records = []
    for _ in range(answers):
        pos = read_name(data, pos)[1]
        rtype, _, ttl, length = struct.unpack("!HHIH", data[pos:pos + 10])
        records.append((rtype, ttl, data[pos + 10:pos + 10 + length]))
        pos += 10 + length
    return query_id, flags & 0xF, records


def query(address: str, port: int, name: str, qtype: int = TYPE_A, timeout: float = 1.0) -> Tuple[int, List[str]]:
    """Ask a DNS server over UDP; return (rcode, IPv4 addresses)."""
    query_id = random.randrange(1 << 16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(build_query(name, qtype, query_id), (address, port))
        while True:
            reply_id, rcode, records = parse_response(sock.recv(4096))
            if reply_id == query_id:
                break
    return rcode, [socket.inet_ntoa(rdata) for rtype, _, rdata in records if rtype == TYPE_A]


class DnsProtocol(asyncio.DatagramProtocol):
    """Lab DNS on an asyncio loop: loop.create_datagram_endpoint(lambda: DnsProtocol(resolve), local_addr=...)."""

    def __init__(self, resolve: Resolve):
        self.resolve = resolve
        self.transport: Optional[asyncio.DatagramTransport] = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        reply = answer(data, self.resolve)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP "port unreachable" from a client that already left; nothing to do


class DnsServer:
    """Lab DNS on a background thread: `with DnsServer("127.0.0.1", 0, resolve) as dns: dns.port`."""

    def __init__(self, address: str, port: int, resolve: Resolve):
        self.address, self.port, self.resolve = address, port, resolve
        self._sock: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "DnsServer":
        """Bind (port 0 picks a free one, read back from .port) and serve in a thread."""
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((self.address, self.port))
        self.port = self._sock.getsockname()[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"dns-{self.address}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        sock = self._sock
        while not self._stop.is_set():
            if not select.select([sock], [], [], 0.05)[0]:
                continue
            try:
                data, addr = sock.recvfrom(4096)
                reply = answer(data, self.resolve)
                if reply is not None:
                    sock.sendto(reply, addr)
            except OSError:
                continue

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "DnsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
