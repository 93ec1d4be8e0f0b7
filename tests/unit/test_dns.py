"""The lab DNS server: wire format, A/AAAA/NXDOMAIN answers, thread and asyncio servers."""

import asyncio
import socket
import struct

import pytest

from meshlab.backends.local import dns

ADDR = "127.77.40.2"
TABLE = {
    "ratings": ["127.77.0.10"],
    "reviews.default.svc.cluster.local": ["127.77.1.10", "127.77.2.10", "127.77.3.10"],
}


def resolve(name):
    return TABLE.get(name, [])


def a_records(reply):
    _, rcode, records = dns.parse_response(reply)
    return rcode, records


def test_a_query_answers_every_ip_with_ttl_1():
    reply = dns.answer(dns.build_query("reviews.default.svc.cluster.local", query_id=4242), resolve)
    query_id, rcode, records = dns.parse_response(reply)
    assert (query_id, rcode) == (4242, dns.NOERROR)
    assert [socket.inet_ntoa(r) for _, _, r in records] == TABLE["reviews.default.svc.cluster.local"]
    assert {(t, ttl) for t, ttl, _ in records} == {(dns.TYPE_A, 1)}
    flags = struct.unpack("!H", reply[2:4])[0]
    assert flags & 0x8000 and flags & 0x0100, "QR set, RD copied"


def test_unknown_name_is_nxdomain():
    assert a_records(dns.answer(dns.build_query("nope"), resolve)) == (dns.NXDOMAIN, [])


def test_aaaa_is_an_empty_noerror_answer():
    assert a_records(dns.answer(dns.build_query("ratings", dns.TYPE_AAAA), resolve)) == (dns.NOERROR, [])


def test_names_are_normalized_before_resolve():
    seen = []
    dns.answer(dns.build_query("Ratings."), lambda name: seen.append(name) or [])
    assert seen == ["ratings"]
    assert dns.normalize("Ratings.Default.") == "ratings.default"


def test_question_is_echoed_and_ignores_edns_additional_record():
    query = bytearray(dns.build_query("ratings", query_id=7))
    query[10:12] = b"\x00\x01"  # ARCOUNT=1: an EDNS OPT record, as c-ares sends
    query += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    reply = dns.answer(bytes(query), resolve)
    assert reply[12:12 + len(dns.encode_name("ratings")) + 4] == bytes(query[12:12 + len(dns.encode_name("ratings")) + 4])
    assert a_records(reply) == (dns.NOERROR, [(dns.TYPE_A, 1, socket.inet_aton("127.77.0.10"))])


def test_bad_packets():
    assert dns.answer(b"\x00\x01", resolve) is None  # too short: no reply
    response = bytearray(dns.build_query("ratings"))
    response[2] |= 0x80
    assert dns.answer(bytes(response), resolve) is None  # a response: no reply
    truncated = dns.build_query("ratings")[:15]
    assert dns.parse_response(dns.answer(truncated, resolve))[1] == dns.FORMERR
    def broken(name):
        raise RuntimeError("boom")
    assert dns.parse_response(dns.answer(dns.build_query("ratings"), broken))[1] == dns.SERVFAIL


def test_many_ips_fit_in_512_bytes():
    ips = [f"127.77.9.{i}" for i in range(1, 200)]
    reply = dns.answer(dns.build_query("big"), lambda _: ips)
    assert len(reply) <= 512
    assert a_records(reply)[0] == dns.NOERROR


def test_read_name_follows_compression_and_rejects_loops():
    data = b"\x00" * 12 + b"\x07ratings\x00" + b"\xc0\x0c"
    assert dns.read_name(data, 21) == ("ratings", 23)
    with pytest.raises(ValueError):
        dns.read_name(b"\xc0\x00", 0)


def test_thread_server_over_real_udp():
    with dns.DnsServer(ADDR, 0, resolve) as server:
        assert server.running and server.port
        assert dns.query(ADDR, server.port, "reviews.default.svc.cluster.local.") == (
            dns.NOERROR, TABLE["reviews.default.svc.cluster.local"])
        assert dns.query(ADDR, server.port, "missing") == (dns.NXDOMAIN, [])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            junk.sendto(b"garbage!", (ADDR, server.port))
        assert dns.query(ADDR, server.port, "ratings", dns.TYPE_AAAA) == (dns.NOERROR, [])
        port = server.port
    assert not server.running
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind((ADDR, port))  # the port is free again


def test_asyncio_protocol():
    async def main():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: dns.DnsProtocol(resolve), local_addr=(ADDR, 0))
        try:
            port = transport.get_extra_info("sockname")[1]
            return await loop.run_in_executor(None, dns.query, ADDR, port, "ratings")
        finally:
            transport.close()

    assert asyncio.run(main()) == (dns.NOERROR, ["127.77.0.10"])
