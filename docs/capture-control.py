#!/usr/bin/env python3
"""Record every frame exchanged on a corral control socket.

    python3 docs/capture-control.py CONTROL_SOCKET [LISTEN_SOCKET]

It listens on LISTEN_SOCKET (default: capture.sock in a new temp directory)
and prints that path on stdout. Each connection made there is relayed to
CONTROL_SOCKET, frame by frame, so a client aimed at it works as usual:

    corral --socket /tmp/corral-capture-xyz/capture.sock ps

Each frame is written as one line to the file named by CORRAL_CAPTURE_LOG
(default: stderr):

    <seconds since start> <connection number> <-|->  <length> <frame>

`->` goes from the client to the supervisor, `<-` the other way. The control
socket always speaks JSON, so frames are written as they are. The
supervisor's peer checks apply to the relay: run it as the fleet's user (or
root), not from a plugin. Ctrl-C (or SIGTERM) stops it and removes its socket.

Standard library only (Python 3.9 or newer). A debugging aid for authors of
control clients; nothing in corral depends on it. docs/capture-frames.py is
its sibling for plugin connections.
"""

import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

START = time.monotonic()
LOG_LOCK = threading.Lock()
LOG = open(os.environ["CORRAL_CAPTURE_LOG"], "a", buffering=1) if os.environ.get("CORRAL_CAPTURE_LOG") else sys.stderr


def log(conn, arrow, frame):
    try:
        text = frame.decode("utf-8")
    except UnicodeDecodeError:
        text = frame.hex()
    with LOG_LOCK:
        LOG.write("%.6f %d %s %d %s\n" % (time.monotonic() - START, conn, arrow, len(frame), text))
        LOG.flush()


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def pump(conn, arrow, src, dst):
    """Copies frames from src to dst, logging each, until src closes."""
    try:
        while True:
            head = read_exact(src, 4)
            if head is None:
                break
            (length,) = struct.unpack(">I", head)
            if length > 64 * 1024 * 1024:
                # Pass the header on untouched, so the receiver refuses it.
                with LOG_LOCK:
                    LOG.write("%.6f %d %s header claims %d bytes\n" % (time.monotonic() - START, conn, arrow, length))
                dst.sendall(head)
                break
            body = read_exact(src, length)
            if body is None:
                break
            log(conn, arrow, body)
            dst.sendall(head + body)
    except OSError:
        pass
    for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
        try:
            s.shutdown(how)
        except OSError:
            pass


def relay(listener, upstream_path):
    n = 0
    while True:
        try:
            down, _ = listener.accept()
        except OSError:
            return
        n += 1
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            up.connect(upstream_path)
        except OSError as e:
            sys.stderr.write("capture-control.py: cannot reach %s: %s\n" % (upstream_path, e))
            down.close()
            continue
        for args in ((n, "->", down, up), (n, "<-", up, down)):
            threading.Thread(target=pump, args=args, daemon=True).start()


def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write("usage: capture-control.py CONTROL_SOCKET [LISTEN_SOCKET]\n")
        return 2
    upstream = sys.argv[1]
    tmp = None
    if len(sys.argv) == 3:
        path = sys.argv[2]
    else:
        tmp = tempfile.mkdtemp(prefix="corral-capture-")
        path = os.path.join(tmp, "capture.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(16)
    print(path, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _s, _f: stop.set())
    threading.Thread(target=relay, args=(listener, upstream), daemon=True).start()
    stop.wait()
    listener.close()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
