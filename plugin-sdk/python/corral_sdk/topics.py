"""Topics and patterns, as corral's bus checks and matches them.

A topic is dot-separated segments of letters, digits, '-' and '_' (at most
256 characters). A pattern may use ``*`` for one segment and a final ``>``
for one or more.

Topics under ``corral.>`` (and ``corral`` itself) are corral's own: only the
supervisor publishes there. ``check_unreserved`` is the one place in this
SDK that says so, with the same wording as the supervisor and the Rust SDK
(proto's ``event::reserved``). Allow-lists are the supervisor's business.
"""

import re

from .errors import DENIED, PluginError

# The namespace only corral publishes in, as a pattern (``corral`` itself too).
RESERVED = "corral.>"

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")


def check_topic(topic):
    """Raises ``ValueError`` unless ``topic`` is a valid topic."""
    if not isinstance(topic, str) or not 0 < len(topic) <= 256:
        raise ValueError("topic `%s` must be 1 to 256 characters" % (topic,))
    for seg in topic.split("."):
        if not _SEGMENT.match(seg):
            raise ValueError(
                "topic `%s`: segments are non-empty runs of letters, digits, '-' and '_', separated by '.'" % topic
            )


def check_pattern(pattern):
    """Raises ``ValueError`` unless ``pattern`` is a valid pattern."""
    if not isinstance(pattern, str):
        raise ValueError("pattern %r is not a string" % (pattern,))
    segs = pattern.split(".")
    for i, seg in enumerate(segs):
        ok = seg == "*" or (seg == ">" and i == len(segs) - 1) or bool(_SEGMENT.match(seg))
        if not ok or len(pattern) > 256:
            raise ValueError("pattern `%s`: segments are names, `*` (one segment) or a final `>` (one or more)" % (pattern,))


def matches(pattern, topic):
    """Whether ``topic`` matches ``pattern``."""
    p, t = pattern.split("."), topic.split(".")
    for i, seg in enumerate(p):
        if seg == ">":
            return len(t) > i
        if i >= len(t) or (seg != "*" and seg != t[i]):
            return False
    return len(p) == len(t)


def is_reserved(topic):
    """Whether ``topic`` is corral's own: ``corral`` or anything under ``corral.>``."""
    return topic == "corral" or topic.startswith("corral.")


def check_unreserved(topic):
    """Raises ``PluginError`` (code ``denied``) if only corral may publish on ``topic``."""
    if is_reserved(topic):
        raise PluginError(DENIED, "`%s` is under `%s`, which only corral publishes" % (topic, RESERVED))
