"""Benchmark: the evidence report's size and build time for 30 days of history.

Synthetic records (tests/support/records.py): a new version approved and rolled out every
day through 3 stages (10 min, 20 min with a manual promotion, full) with 4 metrics measured
every 30 s, a 30-minute post-promotion watch, one promote request a day, one rollback
(an error-rate breach on day 15) and one drift. Builds the report (without the records'
verification, which is `verify`'s job) and renders HTML, Markdown and JSON. Writes
bench/results/report-size.json.

    python bench/report_size.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "operator")]

from aigate.core.records import ChainCheck  # noqa: E402
from aigate.report import build_report, render  # noqa: E402
from aigate.report.charts import MAX_POINTS_PER_TRACK  # noqa: E402
from support.records import RecordLog, rollout  # noqa: E402

DAYS = 30
ROLLBACK_DAY = 15


def history() -> RecordLog:
    log = RecordLog()
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    for day in range(DAYS):
        at = start + timedelta(days=day)
        log.approve(at, f"2.{day}.0")
        end = rollout(log, at + timedelta(minutes=10), breach_at=5 if day == ROLLBACK_DAY else None)
        if day == ROLLBACK_DAY + 1:
            log.drift(
                end + timedelta(hours=2),
                "stable: spec.template.spec.containers[server].image differed",
            )
    return log


def main() -> int:
    t0 = time.perf_counter()
    log = history()
    made = time.perf_counter() - t0
    measurements = sum(len(r.evidence) for r in log.records)
    t1 = time.perf_counter()
    report = build_report(log.records, ChainCheck(intact=True, problems=()))
    built = time.perf_counter() - t1
    sizes, seconds = {}, {}
    for fmt in ("html", "md", "json"):
        t2 = time.perf_counter()
        text = render(report, fmt)
        seconds[fmt] = round(time.perf_counter() - t2, 2)
        sizes[fmt] = len(text.encode())
    result = {
        "benchmark": "report_size",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "note": "shared 2-core machine; other engineers' tests ran at the same time",
        },
        "history": {
            "days": DAYS,
            "rollouts": len(report.attempts),
            "rollbacks": sum(1 for a in report.attempts if a.outcome == "RollbackCompleted"),
            "records": len(log.records),
            "measurements": measurements,
            "charts": sum(len(a.series) for a in report.attempts),
            "chart_points_max_per_track": MAX_POINTS_PER_TRACK,
        },
        "bytes": sizes,
        "mib": {k: round(v / 2**20, 2) for k, v in sizes.items()},
        "seconds": {"make_records": round(made, 2), "build": round(built, 2), "render": seconds},
    }
    out = ROOT / "bench" / "results" / "report-size.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
