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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the error, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(kind: str) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)
