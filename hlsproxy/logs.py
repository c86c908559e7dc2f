"""Log lines: text for people, JSON for log collectors, client values made safe to put in them."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# C0, DEL and C1 controls, and the Unicode line and paragraph separators: each could end
# a log line early or rewrite what a terminal shows.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# The backslash is escaped too, so that an escape in the log always stands for one.
_ESCAPED = re.compile(rf"\\|{CONTROL.pattern}")


def printable(value: str) -> str:
    """A client-supplied value made safe to log: control characters become escapes, so
    that a `%0a` in a URL cannot forge a log line."""
    return _ESCAPED.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), value)


# What a log call may attach through `extra=`, so that a log collector counts and sums
# without reading the prose: `event` names what happened (stream_started, stream_ended,
# session_started, session_stopped, stream_retry, client_cut, request_failed ...), `stream`
# the content key, `mode` ts or hls, `engine` the engine's label (never its address, except
# in `engine_address` on lines about an engine that cannot be reached: the operator's to read),
# `reason` why it ended, `duration_s` its age, `bytes_in` and `bytes_out` what it moved.
FIELDS = (
    "event",
    "stream",
    "mode",
    "engine",
    "engine_address",
    "reason",
    "code",
    "duration_s",
    "bytes_in",
    "bytes_out",
    "retry",
    "client",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the FIELDS the call gave (and
    the error, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(kind: str) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)
