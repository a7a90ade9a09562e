#!/usr/bin/env python3
"""Record every frame a corral plugin exchanges with its supervisor.

Put this in front of a plugin's command in the fleet config:

    [plugins.echo-py]
    path = "examples/echo-py"
    cmd = ["python3", "/path/to/capture-frames.py", "python3", "-u", "main.py"]

It creates a socket of its own, starts the real command with
CORRAL_PLUGIN_SOCKET pointing there, and relays each connection the plugin
opens to the supervisor's socket, frame by frame. Each frame is written as one
line to the file named by CORRAL_CAPTURE_LOG (default: stderr, which corral
copies into the plugin's log):

    <seconds since start> <connection number> <-|->  <length> <frame>

`->` goes from the plugin to the supervisor, `<-` the other way. JSON frames
are written as they are; bincode frames as hex. The supervisor's peer checks
still pass: this relay is the process corral spawned, so it runs as the same
user in the plugin's process group, and it forwards the plugin's hello with
its secret unchanged.

Standard library only (Python 3.9 or newer). A debugging aid for SDK
authors; nothing in corral depends on it.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
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


def relay(listener, upstream_path, tmp):
    n = 0
    while True:
        try:
            down, _ = listener.accept()
        except OSError:
            return
        n += 1
        if n == 2:
            # Both connections are open (plugin, then bus): nobody needs the
            # socket file any more, and a SIGKILLed relay leaves nothing behind.
            shutil.rmtree(tmp, ignore_errors=True)
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.connect(upstream_path)
        for args in ((n, "->", down, up), (n, "<-", up, down)):
            threading.Thread(target=pump, args=args, daemon=True).start()


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: capture-frames.py PROGRAM [ARGS...] (as a plugin's cmd)\n")
        return 2
    upstream = os.environ["CORRAL_PLUGIN_SOCKET"]
    tmp = tempfile.mkdtemp(prefix="corral-capture-")
    path = os.path.join(tmp, "plugin.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    threading.Thread(target=relay, args=(listener, upstream, tmp), daemon=True).start()
    env = dict(os.environ, CORRAL_PLUGIN_SOCKET=path)
    child = subprocess.Popen(sys.argv[1:], env=env)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    code = child.wait()
    listener.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
