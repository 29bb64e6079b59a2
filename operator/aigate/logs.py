"""Structured logs: one JSON object per line, with the fields handlers pass as `extra`."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# kopf attaches its whole settings object and internal flags to some records: noise.
_IGNORED = {"settings", "k8s_skip"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _IGNORED and not key.startswith("_"):
                entry[key] = (
                    value
                    if isinstance(value, str | int | float | bool | list | dict)
                    else str(value)
                )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The API client logs request bodies at DEBUG, which may hold secrets: keep it quiet.
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    # kopf reports every successful watch-event handler at INFO: one line per event.
    if not verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
