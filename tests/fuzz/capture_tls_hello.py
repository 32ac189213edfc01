#!/usr/bin/python3
"""Capture the first bytes (the TLS ClientHello) that real clients send, for
tests/fuzz/corpus/tls_hello/ and the unit and integration tests of
`route = sni`.

    tests/fuzz/capture_tls_hello.py OUTDIR

Listens on 127.0.0.1 (a free port), points openssl s_client, gnutls-cli and
curl at it with a server name (and openssl once without one), and writes
what each sent until its ClientHello was complete (the record lengths and
the handshake length say when) to OUTDIR/NAME. Nothing answers: each client
gives up when the listener closes."""

import os
import socket
import subprocess
import sys

CLIENTS = {
    "openssl-api.example.com":
        ["openssl", "s_client", "-connect", "127.0.0.1:{port}", "-servername", "api.example.com"],
    "openssl-tls12-www.example.org":
        ["openssl", "s_client", "-tls1_2", "-connect", "127.0.0.1:{port}",
         "-servername", "www.example.org"],
    "openssl-noservername":
        ["openssl", "s_client", "-connect", "127.0.0.1:{port}", "-noservername"],
    "gnutls-api.example.com":
        ["gnutls-cli", "--insecure", "--sni-hostname", "api.example.com", "-p", "{port}",
         "127.0.0.1"],
    "curl-api.example.com":
        ["curl", "-sk", "--max-time", "5", "--resolve", "api.example.com:{port}:127.0.0.1",
         "https://api.example.com:{port}/"],
    "curl-x.example.com":
        ["curl", "-sk", "--max-time", "5", "--resolve", "X.Example.COM:{port}:127.0.0.1",
         "https://X.Example.COM:{port}/"],
}


def hello_complete(data):
    """True once data holds the whole first handshake message."""
    payload, pos = b"", 0
    while pos + 5 <= len(data):
        n = int.from_bytes(data[pos + 3:pos + 5], "big")
        if pos + 5 + n > len(data):
            break
        payload += data[pos + 5:pos + 5 + n]
        pos += 5 + n
        if len(payload) >= 4 and len(payload) >= 4 + int.from_bytes(payload[1:4], "big"):
            return True
    return False


def capture(name, argv, outdir):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    port = srv.getsockname()[1]
    argv = [a.format(port=port) for a in argv]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    conn, _ = srv.accept()
    conn.settimeout(5)
    data = b""
    while not hello_complete(data):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    conn.close()
    srv.close()
    proc.stdin.close()
    proc.wait(timeout=10)
    with open(os.path.join(outdir, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes, complete={hello_complete(data)}")


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    for name, argv in CLIENTS.items():
        capture(name, argv, outdir)


if __name__ == "__main__":
    main()
