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
    with socket.create_connection(("::1", port), timeout=5) as c:
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
    ls.settimeout(10)

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
        got, how = st.recv_until_close(c, timeout=10)
    assert how == "eof" and got == payload, (how, len(got))
    st.wait_for(lambda: s.access(backend="u"), 5 * st.SLOW, "the access-log line")
    assert s.access(backend="u")[0]["addr"] == f"unix:{path}"
    t.join(5)
    ls.close()
    s.stop()
