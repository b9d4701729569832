"""Logging for ``wschat serve``: text or JSON lines, one config for uvicorn and wschat alike.

``log_config(level, fmt)`` returns the ``logging.config.dictConfig`` mapping handed to
uvicorn's ``Config(log_config=...)``, so uvicorn's own lines ("Started server process",
``"WebSocket /ws/alice?..." [accepted]``) and wschat's follow the same format. Every handler
carries ``RedactFilter``: the values of secret query parameters (``resume``, ``token``), of
``Authorization`` headers and of ``wschat.token.*`` subprotocol entries never reach a log line,
whoever logged it and at whatever level (uvicorn prints the ASGI scope, subprotocols included,
at trace). Imports only the standard library.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
SECRET_PARAMS = ("resume", "token")

# ``resume=...`` or ``token=...`` inside a query string, up to the next separator.
_SECRET_RE = re.compile(
    r"(?P<key>(?:^|[?&;\s'\"])(?:" + "|".join(SECRET_PARAMS) + r")=)[^&;\s\"']*"
)
# ``wschat.token.TOKEN`` offered as a subprotocol (docs/security.md, "Signed tokens"), as
# printed in a header line or in the scope's ``subprotocols`` list.
TOKEN_SUBPROTOCOL_PREFIX = "wschat.token."
_SUBPROTOCOL_RE = re.compile(re.escape(TOKEN_SUBPROTOCOL_PREFIX) + r"[^\s,;'\"\])]+")
# An ``Authorization`` header's value, however printed: ``authorization: Bearer T`` (a header
# line), ``(b'authorization', b'Bearer T')`` (ASGI headers), ``'authorization': 'Bearer T'``.
_AUTH_RE = re.compile(
    r"(?P<key>authorization['\"]?\s*[:,=]\s*(?:b?['\"])?)[^'\"\r\n]+", re.IGNORECASE
)
REDACTED = "***"


def redact(text: str) -> str:
    """Return ``text`` with every secret replaced by ``***``.

    Secrets are the values of the ``token`` and ``resume`` query parameters, the value of an
    ``Authorization`` header and the token of a ``wschat.token.*`` subprotocol entry.
    """
    if "=" in text:
        text = _SECRET_RE.sub(lambda m: m.group("key") + REDACTED, text)
    if TOKEN_SUBPROTOCOL_PREFIX in text:
        text = _SUBPROTOCOL_RE.sub(TOKEN_SUBPROTOCOL_PREFIX + REDACTED, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_RE.sub(lambda m: m.group("key") + REDACTED, text)
    return text


class RedactFilter(logging.Filter):
    """Rewrite a record's message and arguments so that no secret (see ``redact``) is written out.

    Arguments are redacted one by one (uvicorn's access formatter reads them as a tuple); an
    argument that is not a string, such as the ASGI scope logged at trace level, is replaced
    by its redacted text only when that text held a secret.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in args)
        elif isinstance(args, Mapping):
            record.args = {key: _redact_arg(value) for key, value in args.items()}
        return True


def _redact_arg(arg: object) -> object:
    if isinstance(arg, str):
        return redact(arg)
    if isinstance(arg, int | float | bool) or arg is None:
        return arg
    text = str(arg)
    cleaned = redact(text)
    return arg if cleaned == text else cleaned


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and extras."""

    # Attributes every LogRecord has; anything else was passed as ``extra=`` and is kept.
    _STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def log_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """Return the dictConfig for uvicorn and wschat at ``level`` in format ``fmt``.

    Raises ``ValueError`` for an unknown format.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}")
    level_name = level.upper()
    if fmt == "json":
        formatters: dict[str, Any] = {
            "default": {"()": JsonFormatter},
            "access": {"()": JsonFormatter},
        }
    else:
        formatters = {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": None,
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
                "use_colors": None,
            },
        }
    handlers = {
        "default": {
            "formatter": "default",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "filters": ["redact"],
        },
        "access": {
            "formatter": "access",
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "filters": ["redact"],
        },
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactFilter}},
        "formatters": formatters,
        "handlers": handlers,
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level_name, "propagate": False},
            "uvicorn.error": {"level": level_name},
            "uvicorn.access": {"handlers": ["access"], "level": level_name, "propagate": False},
            "wschat": {"handlers": ["default"], "level": level_name, "propagate": False},
        },
    }
