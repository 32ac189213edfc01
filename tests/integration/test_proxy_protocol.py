"""PROXY protocol end to end: accept_proxy on a listener (hand-made v1/v2
headers, malformed and late ones), send_proxy to servers (the exact bytes a
backend receives), and both against a real HAProxy in front of and behind
sluice."""

import hashlib
import ipaddress
import os
import socket
import struct
import time

import pytest

import ctltest as ct
import peers
import sluicetest as st

T = 5.0 * st.SLOW  # bound for one exchange

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


# --------------------------------------------------------------------------
# headers


def v1(src, sport, dst, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src=None, sport=0, dst=None, dport=0, *, cmd=1, tlvs=b""):
    """A v2 header; src None: UNSPEC (no addresses)."""
    if src is None:
        body, fam = b"", 0x00
    else:
        a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        fam = 0x21 if a.version == 6 else 0x11
        body = a.packed + b.packed + struct.pack("!HH", sport, dport)
    body += tlvs
    return V2_SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(body)) + body


def tlv(kind, value):
    return struct.pack("!BH", kind, len(value)) + value


def fmt_addr(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# --------------------------------------------------------------------------
# backends


def hash_handler(conn, srv):
    """Read to EOF; answer with the byte count (8 bytes) and their sha256."""
    h = hashlib.sha256()
    n = 0
    while True:
        d = conn.recv(1 << 16)
        if not d:
            break
        n += len(d)
        h.update(d)
    conn.sendall(struct.pack("!Q", n) + h.digest())
    conn.shutdown(socket.SHUT_WR)


def capture_handler(conn, srv):
    """Read to EOF; keep what arrived in srv.state['got'] (a list per
    connection); answer b'ok'."""
    buf = bytearray()
    while True:
        d = conn.recv(1 << 16)
        if not d:
            break
        buf += d
    with srv.cond:
        srv.state.setdefault("got", []).append(bytes(buf))
        srv.cond.notify_all()
    conn.sendall(b"ok")
    conn.shutdown(socket.SHUT_WR)


def captured(srv, count=1, timeout=T):
    return st.wait_for(lambda: srv.state.get("got") if len(srv.state.get("got", [])) >= count
                       else None, timeout, f"{count} connection(s) captured by the backend")


def send_and_capture(port, data, timeout=T):
    """Connect, send data, half-close, expect b'ok' then EOF; return local port."""
    c = st.connect(port, timeout=timeout)
    try:
        local = c.getsockname()[1]
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        got, how = st.recv_until_close(c, timeout)
        assert (got, how) == (b"ok", "eof"), f"expected b'ok' then EOF, got {got!r} ({how})"
        return local
    finally:
        c.close()


def proxy_config(port, servers, listener=None, **kw):
    lst = {"accept_proxy": "on"}
    lst.update(listener or {})
    return st.make_config(port, servers, listener=lst, **kw)


def good_session(port, hdr, payload=b"still here"):
    """An accept_proxy session with a valid header, checked by an echo."""
    c = st.connect(port, timeout=T)
    c.sendall(hdr)
    st.roundtrip(c, payload, T)
    return c


# --------------------------------------------------------------------------
# accept_proxy: valid headers


HEADERS = {
    # name: (header bytes, client address the access log must show; None = the real peer)
    "v1-tcp4": (v1("203.0.113.7", 40001, "198.51.100.1", 443), ("203.0.113.7", 40001)),
    "v1-tcp6": (v1("2001:db8::7", 40002, "2001:db8::1", 443), ("2001:db8::7", 40002)),
    "v1-unknown": (b"PROXY UNKNOWN\r\n", None),
    "v2-ipv4": (v2("192.0.2.55", 65535, "192.0.2.1", 80), ("192.0.2.55", 65535)),
    "v2-ipv6": (v2("2001:db8:1::55", 1, "2001:db8:1::1", 8443), ("2001:db8:1::55", 1)),
    "v2-ipv4-tlvs": (v2("192.0.2.66", 1234, "192.0.2.1", 80,
                        tlvs=tlv(0x01, b"h2") + tlv(0x02, b"example.com") + tlv(0x04, bytes(40))),
                     ("192.0.2.66", 1234)),
    # The largest header accepted: 1024 bytes (addresses + a 993-byte NOOP TLV).
    "v2-1024-bytes": (v2("192.0.2.88", 8888, "192.0.2.1", 80, tlvs=tlv(0x04, bytes(993))),
                      ("192.0.2.88", 8888)),
    "v2-local": (v2("192.0.2.77", 1, "192.0.2.1", 2, cmd=0), None),
    "v2-unspec": (v2(), None),
}


@pytest.mark.parametrize("kind", sorted(HEADERS))
def test_header_and_payload_in_one_packet(sluice, backend, port, relay, kind):
    hdr, want = HEADERS[kind]
    b = backend(st.echo_handler)
    s = sluice(proxy_config(port, [f"b {b.addr}"], relay=relay))
    c = st.connect(port, timeout=T)
    local = c.getsockname()[1]
    # Payload in the same send as the header, looking like a header itself
    # and with the bytes a sloppy parser would trip on.
    p1 = b"PROXY TCP4 6.6.6.6 6.6.6.6 6 6\r\n" + V2_SIG + b"\x00\r\n\x00data"
    # Then a second write bigger than the 1 KiB the header read may take.
    p2 = os.urandom(5000)
    try:
        c.sendall(hdr + p1)
        got = st.recv_exact(c, len(p1), T)
        assert got == p1, f"backend echoed {got[:80]!r}, expected the payload {p1[:80]!r}"
        st.roundtrip(c, p2, T)
        c.shutdown(socket.SHUT_WR)
        rest, how = st.recv_until_close(c, T)
        assert (rest, how) == (b"", "eof"), f"after the payload: {rest[:80]!r} ({how})"
    finally:
        c.close()
    if want is None:
        client = fmt_addr("127.0.0.1", local)
        e = s.access_for(local)
    else:
        client = fmt_addr(*want)
        e = s.wait_access(client=client)[0]
    assert e["client"] == client, e
    assert (e["reason"], e["backend"]) == ("client_close", "b"), e
    n = len(p1) + len(p2)
    assert (e["up"], e["down"]) == (str(n), str(n)), f"header bytes counted as payload? {e}"
    assert b.accepted == 1
    s.stop()


@pytest.mark.parametrize("version", [1, 2])
def test_one_mib_payload_with_the_header(sluice, backend, port, relay, version):
    b = backend(hash_handler)
    s = sluice(proxy_config(port, [f"b {b.addr}"], relay=relay))
    hdr = v1("10.20.30.40", 5555, "10.0.0.1", 80) if version == 1 else \
        v2("10.20.30.40", 5555, "10.0.0.1", 80)
    payload = os.urandom(1 << 20)
    c = st.connect(port, timeout=30 * st.SLOW)
    try:
        # One sendall: the header and the start of the payload share a segment.
        c.sendall(hdr + payload)
        c.shutdown(socket.SHUT_WR)
        tail = st.recv_exact(c, 40, 30 * st.SLOW)
    finally:
        c.close()
    n, digest = struct.unpack("!Q32s", tail)
    assert n == len(payload), f"backend received {n} bytes, client sent {len(payload)} after the header"
    assert digest == hashlib.sha256(payload).digest(), "payload corrupted on the way"
    e = s.wait_access(client="10.20.30.40:5555")[0]
    assert e["up"] == str(len(payload)), e
    s.stop()


def test_header_arriving_in_pieces(sluice, backend, port, relay):
    """A header trickling in byte by byte (within proxy_timeout) is fine."""
    b = backend(st.echo_handler)
    s = sluice(proxy_config(port, [f"b {b.addr}"], relay=relay))
    for hdr, client in [(v1("198.51.100.9", 999, "198.51.100.1", 80), "198.51.100.9:999"),
                        (v2("198.51.100.10", 1000, "198.51.100.1", 80,
                            tlvs=tlv(0x04, b"x" * 20)), "198.51.100.10:1000")]:
        c = st.connect(port, timeout=T)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i in range(len(hdr)):
                c.send(hdr[i:i + 1])
                time.sleep(0.003)  # pacing: one byte per segment, not a wait
            st.roundtrip(c, b"after the header", T)
        finally:
            c.close()
        s.wait_access(client=client)
    assert b.accepted == 2
    s.stop()


def test_source_balance_uses_the_header_address(sluice, named, port):
    """balance = source hashes the header's address: a client announced as
    127.0.0.K lands where a client really connecting from 127.0.0.K lands."""
    servers = {n: named(n) for n in ("a", "b", "c")}
    direct = st.free_port()
    extra = f"\n[listener direct]\nbind = 127.0.0.1:{direct}\npool = main\n"
    s = sluice(proxy_config(port, [f"{n} {srv.addr}" for n, srv in servers.items()],
                            balance="source", extra=extra))

    def via_header(ip, sport):
        c = st.connect(port, timeout=T)
        try:
            c.sendall(v1(ip, sport, "127.0.0.1", port))
            return st.recv_line(c, T).decode()
        finally:
            c.close()

    def via_bind(ip):
        c = st.connect(direct, src=ip, timeout=T)
        try:
            return st.recv_line(c, T).decode()
        finally:
            c.close()

    keys = [f"127.0.0.{i}" for i in range(2, 32)]
    got = {}
    for i, k in enumerate(keys):
        # Different source ports, same address: same server (the port is not hashed).
        picks = {via_header(k, 20000 + i), via_header(k, 30000 + i)}
        assert len(picks) == 1, f"header source {k} went to {picks}"
        got[k] = picks.pop()
        real = via_bind(k)
        assert real == got[k], f"header source {k} -> {got[k]}, real source {k} -> {real}"
    assert set(got.values()) == {"a", "b", "c"}, (
        f"30 header addresses (all from the real peer 127.0.0.1) used only {set(got.values())}")
    s.stop()


# --------------------------------------------------------------------------
# accept_proxy: malformed, missing, late


def _v2_bad_sig():
    h = bytearray(v2("192.0.2.1", 1, "192.0.2.2", 2))
    h[7] ^= 0x01  # 'Q' -> 'P'
    return bytes(h) + b"payload"


BAD = {
    # name: (bytes sent, half-close after sending, substring of the logged reason or None)
    "garbage": (b"\x00\x01\x02\xffgarbage\r\n", False, "not a PROXY protocol header"),
    "http-request": (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", False,
                     "not a PROXY protocol header"),
    "tls-hello": (bytes.fromhex("16030100a5010000a10303") + os.urandom(40), False,
                  "not a PROXY protocol header"),
    "truncated-then-close": (b"PROXY TCP4 192.0.2.1 192.0.2.2 ", True, None),
    "truncated-v2-then-close": (v2("192.0.2.1", 1, "192.0.2.2", 2)[:20], True, None),
    "v1-too-long": (b"PROXY TCP4 " + b"1" * 200 + b"\r\n", False, "107"),
    "v1-lf-only": (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\nhello", False, "v1"),
    "v1-leading-zero-port": (b"PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n", False, "v1"),
    "v1-bad-ip": (b"PROXY TCP4 192.0.2.256 192.0.2.2 1 2\r\n", False, "v1"),
    "v1-double-space": (b"PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n", False, "v1"),
    "v2-bad-signature": (_v2_bad_sig(), False, "not a PROXY protocol header"),
    "v2-bad-version": (b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x11\x11\x00\x0c"
                       + bytes(12), False, "v2"),
    "v2-too-long": (V2_SIG + b"\x21\x11\x04\x00" + bytes(12), False, "v2"),
    "v2-1025-bytes": (v2("192.0.2.1", 1, "192.0.2.2", 2, tlvs=tlv(0x04, bytes(994))) + b"data",
                      False, "v2: header too long"),
    "v2-unix-family": (V2_SIG + b"\x21\x31\x00\xd8" + bytes(216), False, "v2"),
    "v2-short-addresses": (V2_SIG + b"\x21\x21\x00\x0c" + bytes(12), False, "v2"),
    "big-garbage": (b"\xff" + os.urandom(64 << 10), False, None),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_header_closes_only_that_connection(sluice, backend, port, case):
    data, half_close, why = BAD[case]
    b = backend(st.echo_handler)
    s = sluice(proxy_config(port, [f"b {b.addr}"]))
    good = good_session(port, v1("192.0.2.200", 2000, "192.0.2.1", 80))
    try:
        c = st.connect(port, timeout=T)
        local = c.getsockname()[1]
        try:
            try:
                c.sendall(data)
                if half_close:
                    c.shutdown(socket.SHUT_WR)
            except (ConnectionResetError, BrokenPipeError):
                pass  # closed while we were still sending: fine
            got, how = st.recv_until_close(c, 2.0 * st.SLOW)
            assert got == b"", f"{case}: sluice answered {got[:80]!r}"
        finally:
            c.close()
        e = s.access_for(local)
        assert e["reason"] == "proxy_header", e
        assert (e["backend"], e["up"], e["down"]) == ("-", "0", "0"), e
        assert e["client"] == f"127.0.0.1:{local}", e
        if why is not None:
            s.wait_log(f"bad PROXY header from 127.0.0.1:{local}: ")
            line = [ln for ln in s.log().splitlines()
                    if f"bad PROXY header from 127.0.0.1:{local}: " in ln][0]
            assert why in line, f"{case}: expected {why!r} in {line!r}"
        # The session with a good header is untouched, nothing bad reached the backend.
        st.roundtrip(good, b"after " + case.encode(), T)
        assert b.accepted == 1, f"{case}: a malformed header reached the backend"
    finally:
        good.close()
    s.wait_access(client="192.0.2.200:2000")
    s.stop()


def test_missing_header_times_out(sluice, backend, port):
    """proxy_timeout = 1s: a silent client and one that sent half a header
    are closed after ~1 s (the timer runs from accept, not from the last
    byte); a slow but complete header within the time is served."""
    b = backend(st.echo_handler)
    s = sluice(proxy_config(port, [f"b {b.addr}"], listener={"proxy_timeout": "1s"}))
    t0 = time.monotonic()
    silent = st.connect(port, timeout=T)
    partial = st.connect(port, timeout=T)
    slow = st.connect(port, timeout=T)
    try:
        ports = {"silent": silent.getsockname()[1], "partial": partial.getsockname()[1]}
        hdr = v1("192.0.2.33", 3333, "192.0.2.1", 80)
        # The partial one keeps sending bytes of a header that never ends.
        for i in range(8):
            partial.send(b"PROXY TCP4 192.0.2.1 "[i * 2:i * 2 + 2])
            if i == 3:
                slow.sendall(hdr[:10])
            time.sleep(0.08)  # pacing of the trickle (0.64 s in all, under the 1 s)
        slow.sendall(hdr[10:])
        st.roundtrip(slow, b"in time", T)
        results = {}
        for name, sock in (("silent", silent), ("partial", partial)):
            how, _ = st.wait_closed(sock, 3.0 * st.SLOW)
            results[name] = (how, time.monotonic() - t0)
        for name, (how, secs) in results.items():
            assert 0.9 <= secs <= 1.0 + 0.6 * st.SLOW, f"{name} closed ({how}) after {secs:.2f}s, expected ~1s"
            e = s.access_for(ports[name])
            assert (e["reason"], e["backend"]) == ("proxy_header", "-"), e
        # The slow session is past the header: proxy_timeout no longer applies.
        st.assert_open(slow, 0.5)  # a window: nothing may happen in it
        st.roundtrip(slow, b"still in time", T)
    finally:
        for c in (silent, partial, slow):
            c.close()
    e = s.wait_access(client="192.0.2.33:3333")[0]
    assert e["reason"] == "client_close", e
    s.stop()


def test_missing_or_late_header_logs_why(sluice, backend, port):
    """docs/config.md: anything malformed, missing or late ends with
    proxy_header "and an info log line saying why"; docs/operations.md: "an
    info line `bad PROXY header from ADDR: WHY` says which".  Checked for a
    client that closes mid-header and one that never completes it."""
    b = backend(st.echo_handler)
    s = sluice(proxy_config(port, [f"b {b.addr}"], listener={"proxy_timeout": "500ms"}))
    closer = st.connect(port, timeout=T)
    late = st.connect(port, timeout=T)
    try:
        cport, lport = closer.getsockname()[1], late.getsockname()[1]
        closer.sendall(b"PROXY TCP4 192.0.2.1")
        closer.shutdown(socket.SHUT_WR)
        late.sendall(b"PROXY TCP4 192.0.2.1")
        for c in (closer, late):
            st.wait_closed(c, 3.0 * st.SLOW)
    finally:
        closer.close()
        late.close()
    for p in (cport, lport):
        assert s.access_for(p)["reason"] == "proxy_header"
    missing = [p for p in (cport, lport) if f"bad PROXY header from 127.0.0.1:{p}: " not in s.log()]
    assert not missing, (
        f"no 'bad PROXY header from 127.0.0.1:PORT: WHY' line for "
        f"{['closed mid-header' if p == cport else 'proxy_timeout' for p in missing]}\n{s.tail()}")
    s.stop()


def test_listener_without_accept_proxy_forwards_a_header_as_data(sluice, backend, port):
    """accept_proxy is per listener and off by default: bytes that look like
    a header are just payload there."""
    b = backend(capture_handler)
    s = sluice(st.make_config(port, [f"b {b.addr}"]))
    data = v1("192.0.2.1", 1, "192.0.2.2", 2) + b"body"
    local = send_and_capture(port, data)
    assert captured(b) == [data]
    assert s.access_for(local)["client"] == f"127.0.0.1:{local}"
    s.stop()


# --------------------------------------------------------------------------
# send_proxy: what the backend receives


def expected_header(version, src, sport, dst, dport):
    return v1(src, sport, dst, dport) if version == 1 else v2(src, sport, dst, dport)


SEND_CASES = {
    # name: (pool send_proxy or None, server option or None, version expected (0 = none))
    "pool-v1": ("v1", None, 1),
    "pool-v2": ("v2", None, 2),
    "pool-off": ("off", None, 0),
    "default-off": (None, None, 0),
    "server-v2-over-pool-v1": ("v1", "v2", 2),
    "server-v1-over-pool-v2": ("v2", "v1", 1),
    "server-off-over-pool-v2": ("v2", "off", 0),
    "server-v1-pool-default": (None, "v1", 1),
}


@pytest.mark.parametrize("case", sorted(SEND_CASES))
def test_send_proxy_bytes_on_the_wire(sluice, backend, port, case):
    pool_v, srv_v, want = SEND_CASES[case]
    b = backend(capture_handler)
    server = f"b {b.addr}" + (f" send_proxy={srv_v}" if srv_v else "")
    s = sluice(st.make_config(port, [server], pool={"send_proxy": pool_v} if pool_v else None))
    payload = b"GET / HTTP/1.0\r\n\r\n" + os.urandom(3000)
    local = send_and_capture(port, payload)
    got = captured(b)[0]
    hdr = expected_header(want, "127.0.0.1", local, "127.0.0.1", port) if want else b""
    assert got[:len(hdr)] == hdr, f"{case}: backend got {got[:60]!r}, expected header {hdr!r}"
    assert got[len(hdr):] == payload, f"{case}: payload after the header differs"
    e = s.access_for(local)
    assert e["up"] == str(len(payload)), f"the header we send is not client payload: {e}"
    s.stop()


@pytest.mark.parametrize("version", [1, 2])
def test_accepted_header_is_passed_on(sluice, backend, port, version):
    """accept_proxy + send_proxy: the backend's header carries the addresses
    of the header sluice received; with UNKNOWN / LOCAL, the real peer."""
    b = backend(capture_handler)
    s = sluice(proxy_config(port, [f"b {b.addr}"], pool={"send_proxy": f"v{version}"}))
    cases = [
        (v1("192.0.2.5", 5005, "198.51.100.5", 443), ("192.0.2.5", 5005, "198.51.100.5", 443)),
        (v2("2001:db8::5", 6006, "2001:db8::6", 8443), ("2001:db8::5", 6006, "2001:db8::6", 8443)),
        (b"PROXY UNKNOWN\r\n", None),
        (v2("192.0.2.9", 1, "192.0.2.10", 2, cmd=0), None),
    ]
    for i, (hdr, addrs) in enumerate(cases):
        payload = f"payload {i}".encode()
        local = send_and_capture(port, hdr + payload)
        got = captured(b, i + 1)[i]
        if addrs is None:
            addrs = ("127.0.0.1", local, "127.0.0.1", port)
        want = expected_header(version, *addrs)
        assert got == want + payload, f"case {i}: backend got {got!r}, expected {want + payload!r}"
    s.stop()


# --------------------------------------------------------------------------
# real HAProxy


@pytest.fixture(scope="module")
def haproxy_bin():
    path, msg = peers.haproxy_or_install()
    if not path:
        pytest.skip(f"haproxy not found and `scripts/setup haproxy` could not install it: {msg}")
    return path


@pytest.fixture
def haproxy(tmp_path, haproxy_bin):
    """haproxy(body, ports, name='haproxy') -> started peers.HAProxy; stopped
    by PID at teardown."""
    made = []

    def start(body, ports, name="haproxy"):
        hp = peers.HAProxy(tmp_path, peers.haproxy_config(body), ports, name=name,
                           binary=haproxy_bin)
        made.append(hp)
        return hp.start()

    yield start
    for hp in made:
        hp.kill()


def http_get(port, timeout=T):
    """GET / over HTTP/1.0; returns (status line, body, client source port)."""
    c = st.connect(port, timeout=timeout)
    try:
        local = c.getsockname()[1]
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data, _how = st.recv_until_close(c, timeout)
    finally:
        c.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no HTTP response through sluice: {data[:200]!r}"
    return head.split(b"\r\n")[0].decode(), body.decode(), local


SRC_RETURN = ('http-request return status 200 content-type text/plain '
              'lf-string "%[src]:%[src_port]"')


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2",
                                  "send-proxy-v2 proxy-v2-options crc32c,unique-id"])
def test_haproxy_in_front(sluice, backend, port, haproxy, send):
    """client -> HAProxy (mode tcp, send-proxy[-v2]) -> sluice (accept_proxy)
    -> echo: sluice sees the client HAProxy saw."""
    b = backend(st.echo_handler)
    s = sluice(proxy_config(port, [f"b {b.addr}"]))
    hport = st.free_port()
    hp = haproxy(f"""
frontend fe
    mode tcp
    bind 127.0.0.1:{hport}
    unique-id-format %ci:%cp
    default_backend sl

backend sl
    mode tcp
    server s 127.0.0.1:{port} {send}
""", [hport])
    for i in range(3):
        c = st.connect(hport, timeout=T)
        try:
            local = c.getsockname()[1]
            st.roundtrip(c, f"hello {i} via haproxy\n".encode() + os.urandom(2000), T)
        finally:
            c.close()
        e = s.access_for(local)
        assert e["client"] == f"127.0.0.1:{local}", f"sluice logged {e['client']}, the client was 127.0.0.1:{local}"
        assert e["backend"] == "b", e
    assert not s.access(reason="proxy_header"), f"sluice rejected HAProxy's header\n{s.tail()}"
    hp.stop()
    s.stop()


@pytest.mark.parametrize("pool_v, srv_v", [("v1", None), ("v2", None), ("off", "v1"),
                                           ("v1", "v2"), ("v2", "v1")])
def test_haproxy_behind(sluice, port, haproxy, pool_v, srv_v):
    """client -> sluice (send_proxy) -> HAProxy (accept-proxy, returns
    %[src]:%[src_port]): HAProxy sees the client sluice saw."""
    hport = st.free_port()
    hp = haproxy(f"""
frontend fe
    mode http
    bind 127.0.0.1:{hport} accept-proxy
    {SRC_RETURN}
""", [hport])
    server = f"hp 127.0.0.1:{hport}" + (f" send_proxy={srv_v}" if srv_v else "")
    s = sluice(st.make_config(port, [server], pool={"send_proxy": pool_v}))
    for _ in range(3):
        status, body, local = http_get(port)
        assert status.split()[1] == "200", status
        assert body == f"127.0.0.1:{local}", f"HAProxy saw {body!r}, the client was 127.0.0.1:{local}"
        assert s.access_for(local)["backend"] == "hp"
    hp.stop()
    s.stop()


def test_haproxy_behind_without_header_refuses(sluice, port, haproxy):
    """The server option turns a pool's send_proxy off: HAProxy (accept-proxy)
    then gets a bare request and closes without an answer."""
    hport = st.free_port()
    hp = haproxy(f"""
frontend fe
    mode http
    bind 127.0.0.1:{hport} accept-proxy
    {SRC_RETURN}
""", [hport])
    s = sluice(st.make_config(port, [f"hp 127.0.0.1:{hport} send_proxy=off"],
                              pool={"send_proxy": "v1"}))
    c = st.connect(port, timeout=T)
    try:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data, _how = st.recv_until_close(c, T)
    finally:
        c.close()
    assert b"200" not in data, f"HAProxy answered without a PROXY header: {data[:200]!r}"
    hp.stop()
    s.stop()


@pytest.mark.parametrize("front, back", [("send-proxy", "v1"), ("send-proxy-v2", "v2"),
                                         ("send-proxy", "v2"), ("send-proxy-v2", "v1")])
def test_haproxy_on_both_sides(sluice, port, haproxy, front, back):
    """client -> HAProxy (send-proxy) -> sluice (accept_proxy, send_proxy) ->
    HAProxy (accept-proxy): the last hop still sees the original client."""
    fport, bport = st.free_port(), st.free_port()
    hp = haproxy(f"""
frontend front
    mode tcp
    bind 127.0.0.1:{fport}
    default_backend sl

backend sl
    mode tcp
    server s 127.0.0.1:{port} {front}

frontend back
    mode http
    bind 127.0.0.1:{bport} accept-proxy
    {SRC_RETURN}
""", [fport, bport])
    s = sluice(proxy_config(port, [f"hp 127.0.0.1:{bport}"], pool={"send_proxy": back}))
    for _ in range(3):
        status, body, local = http_get(fport)
        assert status.split()[1] == "200", status
        assert body == f"127.0.0.1:{local}", f"the last hop saw {body!r}, the client was 127.0.0.1:{local}"
        assert s.access_for(local)["backend"] == "hp"
    hp.stop()
    s.stop()


# --------------------------------------------------------------------------
# counters


@pytest.mark.parametrize("accept_proxy", ["off", "on"])
def test_byte_counters_count_the_payload_sent_with_the_header(sluice, backend, port, accept_proxy):
    """docs/operations.md: byte counters grow as sluice reads the bytes "from
    the client for `bytes_in` of a listener and `bytes_out` of a server".
    Payload that arrived in the same read as the PROXY header is client
    payload too (the access log's up= counts it): it must be in the server's
    bytes_out as in the listener's bytes_in.  (accept_proxy=off: the control.)"""
    b = backend(st.echo_handler)
    http = st.free_port()
    s = sluice(ct.ctl_config(port, [f"b {b.addr}"], http=http,
                             listener={"accept_proxy": accept_proxy}))
    first, second = b"x" * 300, b"y" * 200
    c = st.connect(port, timeout=T)
    try:
        local = c.getsockname()[1]
        hdr = v1("192.0.2.44", 4444, "192.0.2.1", 80) if accept_proxy == "on" else b""
        c.sendall(hdr + first)
        assert st.recv_exact(c, len(first), T) == first
        st.roundtrip(c, second, T)
    finally:
        c.close()
    e = s.wait_access(client="192.0.2.44:4444" if accept_proxy == "on" else f"127.0.0.1:{local}")[0]
    total = len(first) + len(second)
    assert (e["up"], e["down"]) == (str(total), str(total)), e
    _h, fams = ct.scrape(http)
    v = ct.prom_samples(fams)
    lst = (("listener", "main"),)
    srv = (("pool", "main"), ("server", "b"))
    got = {
        "listener bytes_in": v[("sluice_listener_bytes_in_total", lst)],
        "server bytes_out": v[("sluice_server_bytes_out_total", srv)],
        "server bytes_in": v[("sluice_server_bytes_in_total", srv)],
        "listener bytes_out": v[("sluice_listener_bytes_out_total", lst)],
    }
    assert all(x == total for x in got.values()), f"expected {total} bytes everywhere: {got}"
    s.stop()
