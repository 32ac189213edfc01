"""A backend in its own process, for faults that need one: SIGKILL
mid-transfer, SIGSTOP, restart on the same port.

    /usr/bin/python3 procbackend.py HOST PORT NAME [MAX_SECONDS]

Every connection gets "NAME\\n", then its bytes echoed back. PORT 0 picks
one. Prints "listening PORT" once ready. Exits by itself after MAX_SECONDS
(default 300) so a forgotten one never runs on.
"""

import socket
import sys
import threading


def serve(conn):
    try:
        conn.sendall(NAME + b"\n")
        while True:
            d = conn.recv(65536)
            if not d:
                break
            conn.sendall(d)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    global NAME
    host, port, NAME = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    max_seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 300.0
    threading.Timer(max_seconds, lambda: __import__("os")._exit(3)).start()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(128)
    print(f"listening {ls.getsockname()[1]}", flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


NAME = b""
if __name__ == "__main__":
    main()
