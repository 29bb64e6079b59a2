"""The HTML report opened as an auditor opens it: Debian's Chromium, headless, driven by
Playwright (never `playwright install`: the browser comes from the distribution)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from aigate.core.records import ChainCheck
from aigate.report import build_report, render
from support.records import GOOD, two_rollouts

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def test_the_html_report_shows_the_approver_and_one_chart_per_metric(browser, tmp_path):
    report = build_report(two_rollouts().records, ChainCheck(intact=True, problems=()))
    path = tmp_path / "report.html"
    path.write_text(render(report, "html"), encoding="utf-8")

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on(
        "console",
        lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri(), wait_until="load")

    approver = page.locator("td.approver").first
    assert approver.is_visible() and approver.inner_text() == "jane@example.com"
    assert page.locator("#verdict").inner_text().startswith("Record verification: intact")

    charts = page.locator("figure.chart")
    metrics = [charts.nth(i).get_attribute("data-metric") for i in range(charts.count())]
    assert metrics == list(GOOD) * len(report.attempts)  # one SVG per metric and rollout
    for i in range(charts.count()):
        svg = charts.nth(i).locator("svg")
        assert svg.count() == 1
        box = svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
        threshold = svg.locator('g[id$="-threshold-max"] path, g[id$="-threshold-min"] path')
        assert threshold.count() == 1, metrics[i]
        assert threshold.first.bounding_box()["width"] > box["width"] / 2  # drawn across

    page.close()
    assert errors == []
    assert requests == [path.as_uri()]  # nothing fetched but the page itself
