"""What `kubectl aigate report` and `aigate report --from` share: records in, a file out."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aigate.core.records import ChainCheck
from aigate.report import build_report, render
from aigate.report.model import parse_time
from aigate.report.source import LINKS_CHECKED, check_links, read_items

EXTENSIONS = {"html": "html", "md": "md", "json": "json"}


def parse_since(text: str | None) -> datetime | None:
    """`--since 2026-03-01` or an RFC 3339 time; ValueError names what was expected."""
    if not text:
        return None
    when = parse_time(text)
    if when is None:
        raise ValueError(f"--since {text!r}: expected a date (2026-03-01) or an RFC 3339 time")
    return when


def default_output(namespace: str, name: str, fmt: str) -> str:
    return f"aigate-report-{namespace}-{name}.{EXTENSIONS[fmt]}"


def write_report(
    items: Iterable[Mapping[str, Any]],
    name: str,
    namespace: str,
    current: Mapping[str, Any] | None,
    since: str | None,
    fmt: str,
    output: str | None,
    looked_up: bool = False,
    verified: tuple[ChainCheck, str] | None = None,
) -> int:
    """Builds the report of `namespace/name` from AIRecord objects and writes it to `output`
    (`-`: stdout; default: aigate-report-<namespace>-<name>.<ext> here). 1 if no record."""
    try:
        since_at = parse_since(since)
    except ValueError as error:
        print(str(error), file=sys.stderr)
        return 2
    loaded = read_items(items, name=name, namespace=namespace)
    if not loaded.records:
        where = f"{namespace}/{name}" if namespace else name
        print(f"no AIRecord of {where} found; nothing written", file=sys.stderr)
        return 1
    # The full verification (digests, the operator's signatures, the chain's end) when the
    # caller had the operator's public keys; else the links only, and the report says so.
    check, checked = verified or (check_links(loaded.records, loaded.problems), LINKS_CHECKED)
    report = build_report(
        loaded.records,
        check,
        current=current,
        since=since_at,
        checked=checked,
        looked_up=looked_up,
    )
    text = render(report, fmt)
    if output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(output or default_output(report.subject.namespace, report.subject.name, fmt))
    path.write_text(text, encoding="utf-8")
    state = "intact" if check.intact else "NOT intact"
    print(f"report written to {path} ({len(loaded.records)} records, chain {state})")
    return 0


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """--since, -o, --output: the same for `aigate report` and `kubectl aigate report`."""
    parser.add_argument("--since", help="only what happened from this date (2026-03-01) or time on")
    parser.add_argument(
        "-o",
        dest="output_format",
        choices=("html", "md", "json"),
        default="html",
        help="html (charts, self-contained), md or json (every measurement)",
    )
    parser.add_argument(
        "--output",
        help="file to write (- for stdout; default aigate-report-<namespace>-<name>.<ext>)",
    )
