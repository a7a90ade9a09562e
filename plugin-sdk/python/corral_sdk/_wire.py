"""The wire: length-prefixed JSON frames, the hello, tarpc's envelopes.

Every frame is a 4-byte big-endian length followed by that many bytes of
compact JSON. docs/protocol.md describes each message.
"""

import json
import socket
import struct
import threading

PROTOCOL_VERSION = 1
# The oldest protocol version this SDK speaks; the hello offers the range.
MIN_PROTOCOL_VERSION = 1
# Optional behaviours this SDK knows (docs/protocol.md, Versions).
FEATURES = ["bus_in_load", "calls", "streams"]
MAX_FRAME_BYTES = 8 * 1024 * 1024

# tarpc's trace context; corral ignores it, but the field must be present.
TRACE = {"trace_id": [0] * 16, "span_id": 0, "sampling_decision": "Unsampled"}


class ProtocolError(Exception):
    """The peer broke the protocol (oversized frame, bad JSON, refused hello)."""


def encode(value):
    """Compact JSON bytes; refuses NaN and infinities, which JSON lacks."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


class Connection:
    """One framed connection; ``send`` may be called from any thread, ``recv``
    from one thread only."""

    def __init__(self, sock, max_frame=MAX_FRAME_BYTES):
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.max_frame = max_frame
        self.write_lock = threading.Lock()

    def send(self, message):
        """Sends one message; raises ``TypeError``/``ValueError`` when it does
        not encode as JSON and ``ProtocolError`` when it is too large."""
        self.send_raw(encode(message))

    def send_raw(self, body):
        if len(body) > self.max_frame:
            raise ProtocolError("frame of %d bytes exceeds the maximum of %d" % (len(body), self.max_frame))
        with self.write_lock:
            self.sock.sendall(struct.pack(">I", len(body)) + body)

    def recv(self):
        """The next message, or None once the peer closed the connection."""
        head = self.reader.read(4)
        if len(head) < 4:
            return None
        (length,) = struct.unpack(">I", head)
        if length > self.max_frame:
            raise ProtocolError("frame of %d bytes exceeds the maximum of %d" % (length, self.max_frame))
        body = self.reader.read(length)
        if len(body) < length:
            return None
        try:
            return json.loads(body)
        except ValueError as e:
            raise ProtocolError("frame is not JSON: %s" % e)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def connect(path, role, name, secret, max_frame=MAX_FRAME_BYTES):
    """Connects to the plugin socket and shakes hands as ``role`` ("Plugin"
    for the call connection, "Bus" for the event bus connection)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    conn = Connection(sock, max_frame)
    conn.send(
        {
            "protocol_version": PROTOCOL_VERSION,
            "role": {role: {"name": name, "secret": secret}},
            "protocol_min": MIN_PROTOCOL_VERSION,
            "features": FEATURES,
        }
    )
    reply = conn.recv()
    if not isinstance(reply, dict) or "Welcome" not in reply:
        conn.close()
        reason = reply.get("Refused", {}).get("reason") if isinstance(reply, dict) else None
        raise ProtocolError("%s connection refused: %s" % (role.lower(), reason or repr(reply)))
    theirs = (reply["Welcome"] or {}).get("protocol_version")
    if not isinstance(theirs, int) or not MIN_PROTOCOL_VERSION <= theirs <= PROTOCOL_VERSION:
        conn.close()
        raise ProtocolError(
            "the supervisor welcomed us in protocol version %s and this SDK speaks versions %d to %d"
            % (theirs, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION)
        )
    # The features both ends know: methods past them are never sent.
    conn.features = set((reply["Welcome"] or {}).get("features") or [])
    return conn


def request(request_id, method, args, deadline_secs=86400):
    """A tarpc request envelope; the deadline is relative, in seconds."""
    deadline_secs = max(0.0, deadline_secs)
    secs = int(deadline_secs)
    return {
        "Request": {
            "context": {
                "deadline": {"secs": secs, "nanos": int((deadline_secs - secs) * 1e9)},
                "trace_context": TRACE,
            },
            "id": request_id,
            "message": {method: args},
        }
    }


def cancel(request_id):
    """tarpc's cancel message: the caller no longer waits for ``request_id``."""
    return {"Cancel": {"trace_context": TRACE, "request_id": request_id}}


def response(request_id, method, result):
    """A tarpc response envelope carrying ``method``'s result."""
    return {"request_id": request_id, "message": {"Ok": {method: result}}}


def framework_error(request_id, detail):
    """tarpc's own failure (kind 16, ``Other``), for a method this SDK does
    not know."""
    return {"request_id": request_id, "message": {"Err": {"kind": 16, "detail": detail}}}


def relative_deadline(req, default=10.0):
    """Seconds until a request's deadline (tarpc sends it relative)."""
    deadline = (req.get("context") or {}).get("deadline")
    if not deadline:
        return default
    return deadline.get("secs", 0) + deadline.get("nanos", 0) / 1e9
