"""Inside the exec sandbox (network "allowlist"): forward 127.0.0.1:PORT to the proxy's socket.

    python3 -I -S egress_fwd.py SOCKET PORT -- COMMAND...

Listens on the sandbox's own loopback, starts COMMAND, relays every TCP connection to the
unix SOCKET (nanobot.security.egress answers there) and exits with COMMAND's status. When the
proxy refuses a connection, one line saying why goes to stderr, so the command's output tells
the model what happened.

Only built-in C modules (_socket, _thread, _signal, posix): `socket`, `threading` and `os`
would pull in enum and friends and triple the start-up time, which every exec call pays.
"""

import _signal
import _socket
import _thread
import posix
import sys

REFUSED = b"X-Nanobot-Egress: refused"


def pipe(src, dst, first, done=None):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if first and REFUSED in data:
                body = data.partition(b"\r\n\r\n")[2].strip()
                posix.write(2, body[:400] + b"\n")
            first = False
            dst.sendall(data)
    except OSError:
        pass
    try:  # noqa: SIM105 — contextlib would cost start-up time
        dst.shutdown(_socket.SHUT_WR)
    except OSError:
        pass
    if done is not None:
        done.release()


def serve(conn, path):
    up = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        up.connect(path)
    except OSError as exc:
        posix.write(2, b"nanobot egress: the proxy is gone (%s)\n" % str(exc).encode())
        conn.close()
        return
    done = _thread.allocate_lock()
    done.acquire()
    _thread.start_new_thread(pipe, (conn, up, False, done))
    pipe(up, conn, True)
    done.acquire()  # the other direction finished too
    conn.close()
    up.close()


def accept(listener, path):
    while True:
        fd, _ = listener._accept()
        conn = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0, fd)
        _thread.start_new_thread(serve, (conn, path))


def main(argv):
    path, port, sep, *command = argv
    if sep != "--" or not command:
        posix.write(2, b"usage: egress_fwd.py SOCKET PORT -- COMMAND...\n")
        return 2
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(64)
    _thread.start_new_thread(accept, (listener, path))
    pid = posix.posix_spawnp(command[0], command, posix.environ)
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP):
        _signal.signal(sig, lambda s, _f: posix.kill(pid, s))
    _, status = posix.waitpid(pid, 0)
    code = posix.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code  # killed by a signal: 128 + its number, as sh


if __name__ == "__main__":
    posix._exit(main(sys.argv[1:]))
