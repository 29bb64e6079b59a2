"""`report`: the evidence pack an auditor reads, built from AIRecords.

build.build_report (records -> Report, pure) then one renderer: html (charts as inline
SVG), markdown, json. See docs/decisions/0013-evidence-report.md.
"""

from __future__ import annotations

from aigate.report.build import build_report
from aigate.report.markdown import render_json, render_markdown
from aigate.report.model import Report

FORMATS = ("html", "md", "json")


def render(report: Report, fmt: str) -> str:
    """The report as text in `fmt` (html, md or json)."""
    if fmt == "html":
        # matplotlib is imported only when charts are drawn: the plugin's other commands
        # do not pay for it.
        from aigate.report.html import render_html  # noqa: PLC0415

        return render_html(report)
    if fmt == "md":
        return render_markdown(report)
    if fmt == "json":
        return render_json(report)
    raise ValueError(f"unknown report format {fmt!r}: expected one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "Report", "build_report", "render"]
