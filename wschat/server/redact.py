"""Keep secrets out of the logs: a filter that blanks ``token`` and ``resume`` query values.

uvicorn logs every request and WebSocket handshake with its query string
(``"WebSocket /ws/alice?resume=..." [accepted]``). A chat token or a resume token in a log
file is as good as a password, so ``install()`` adds ``RedactSecrets`` to the loggers that
print request lines (issue 7). The filter rewrites the record's arguments, never drops it.
"""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = ("token", "resume")
LOGGERS = ("uvicorn.error", "uvicorn.access", "uvicorn", "wschat.server")
_SECRET_RE = re.compile(r"(?<![\w.-])(" + "|".join(SECRET_PARAMS) + r")=[^&\s\"']*", re.I)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Return ``text`` with the values of ``token=`` and ``resume=`` query parameters blanked."""
    return _SECRET_RE.sub(lambda m: f"{m[1]}={REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Blank secret query values in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def install() -> None:
    """Add the filter to the loggers that print request lines; safe to call more than once."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
