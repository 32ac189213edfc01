"""Address families: IPv6 listeners and servers, Unix-socket servers."""

import os
import socket
import threading

import sluicetest as st


def test_ipv6_listener_and_server(sluice, backend, port):
    b = backend(st.named_handler("six"), name="six", host="::1")
    text = st.make_config(port, [f"six [::1]:{b.port}"]).replace(
        f"bind = 127.0.0.1:{port}", f"bind = [::1]:{port}")
    s = sluice(text)
    with socket.create_connection(("::1", port), timeout=5 * st.SLOW) as c:
        assert st.recv_line(c) == b"six"
        st.roundtrip(c, b"over v6\n")
    st.wait_for(lambda: s.access(reason="client_close"), 5 * st.SLOW, "the access-log line")
    line = s.access(reason="client_close")[0]
    assert line["client"].startswith("[::1]:") and line["addr"] == f"[::1]:{b.port}", line
    s.stop()


def test_unix_socket_server(sluice, port, tmp_path):
    path = tmp_path / "app.sock"
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(str(path))
    ls.listen(16)
    ls.settimeout(10 * st.SLOW)

    def serve():
        try:
            conn, _ = ls.accept()
        except OSError:
            return
        with conn:
            conn.sendall(b"unix\n")
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    s = sluice(st.make_config(port, [f"u unix:{path}"]))
    payload = os.urandom(300_000)
    with st.connect(port) as c:
        assert st.recv_line(c) == b"unix"
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        got, how = st.recv_until_close(c, timeout=10 * st.SLOW)
    assert how == "eof" and got == payload, (how, len(got))
    st.wait_for(lambda: s.access(backend="u"), 5 * st.SLOW, "the access-log line")
    assert s.access(backend="u")[0]["addr"] == f"unix:{path}"
    t.join(5 * st.SLOW)
    ls.close()
    s.stop()


def test_ipv6_wildcard_is_v6_only_and_dual_stack_takes_two_binds(sluice, backend, port):
    """docs/config.md: [::]:PORT accepts IPv6 only (IPV6_V6ONLY), so the
    same port can also be bound for IPv4; dual stack is two bind lines."""
    b = backend(st.named_handler("b"))
    six_only = st.make_config(port, [f"b {b.addr}"]).replace(
        f"bind = 127.0.0.1:{port}", f"bind = [::]:{port}")
    s = sluice(six_only)
    with socket.create_connection(("::1", port), timeout=5 * st.SLOW) as c:
        assert st.recv_line(c) == b"b"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5 * st.SLOW):
            raise AssertionError("[::]:PORT accepted an IPv4 client")
    except ConnectionRefusedError:
        pass
    s.stop()
    dual = six_only.replace(f"bind = [::]:{port}", f"bind = [::]:{port}\nbind = *:{port}")
    s = sluice(dual)
    for host in ("::1", "127.0.0.1"):
        with socket.create_connection((host, port), timeout=5 * st.SLOW) as c:
            assert st.recv_line(c) == b"b", host
    s.stop()


def test_scoped_address_with_unknown_interface_is_a_located_error(tmp_path):
    cfg = tmp_path / "c.ini"
    cfg.write_text(st.make_config(st.free_port(), ["b [fe80::1%nosuchif0]:80"]))
    r = st.run_sluice(["-t", "-c", cfg])
    assert r.returncode == 1, r.stdout
    assert "server: '[fe80::1%nosuchif0]:80': no such network interface" in r.stderr, r.stderr
