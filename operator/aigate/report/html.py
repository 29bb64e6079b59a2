"""Report -> one self-contained HTML page: inline CSS and SVG, no scripts, no external
resources, readable printed. Jinja2 with autoescaping: every string from a record is
escaped; only matplotlib's SVG output is inserted as markup."""

from __future__ import annotations

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

from aigate.report.charts import MAX_POINTS_PER_TRACK, render_chart
from aigate.report.model import Report

_ENV = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["short"] = lambda revision: (revision or "")[:12]

_TEMPLATE = _ENV.from_string(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>aigate evidence report: {{ r.subject.namespace }}/{{ r.subject.name }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0 1em; width: 100%; }
th, td { border: 1px solid #ddd; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } code { font-size: .9em; word-break: break-all; }
.ok { color: #1a7f37; font-weight: bold; } .bad { color: #b42318; font-weight: bold; }
.note { color: #555; font-size: .9em; } figure { margin: 1em 0; page-break-inside: avoid; }
figcaption { font-size: .9em; color: #333; } svg { max-width: 100%; height: auto; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; } dt { font-weight: bold; }
</style>
</head>
<body>
<h1>Evidence report: AIDeployment {{ r.subject.namespace }}/{{ r.subject.name }}</h1>
<p class="note">Generated {{ r.generated_at }} by aigate from its signed decision records.
{% if r.since %}Shows records from {{ r.since }} on (the verification covers every record).{% endif %}
Period shown: {{ r.period[0] or "-" }} to {{ r.period[1] or "-" }}.</p>
<p id="verdict">Record verification:
{% if r.verification.intact %}<span class="ok">intact</span>{% else %}<span class="bad">NOT intact</span>{% endif %}
({{ r.verification.records }} records, sequence {{ r.verification.first_sequence }} to {{ r.verification.last_sequence }}; <a href="#verification">details</a>).
{% if r.current.exists %}The AIDeployment exists: phase {{ r.current.phase or "-" }}, serving version {{ r.current.serving_version or "-" }}.
{% elif r.current.exists is none %}The AIDeployment's current state is not part of this report (built offline from exported records).
{% else %}The AIDeployment no longer exists{% if r.current.deleted_at %} (deleted {{ r.current.deleted_at }}){% endif %}; its records remain.{% endif %}</p>
<nav><b>Contents:</b> <a href="#model">Model</a> · <a href="#approvals">Approvals</a> · <a href="#plan">Approved plans</a> ·
<a href="#attempts">Rollouts</a> · <a href="#requests">Requests</a> · <a href="#drift">Drift</a> ·
<a href="#verification">Verification</a> · <a href="#controls">Control mapping</a></nav>

<h2 id="model">1. The model</h2>
{% if r.model %}
<dl>
<dt>Model</dt><dd>{{ r.model.name }} {{ r.model.version }}</dd>
<dt>Risk tier</dt><dd>{{ r.model.risk_tier or "not recorded" }}</dd>
<dt>Owner</dt><dd>{{ r.model.owner or "not recorded" }}</dd>
<dt>Intended use</dt><dd>{{ r.model.intended_use or "not recorded" }}</dd>
<dt>Known limitations</dt><dd>{% if r.model.limitations %}<ul>{% for l in r.model.limitations %}<li>{{ l }}</li>{% endfor %}</ul>{% else %}none recorded{% endif %}</dd>
<dt>As approved</dt><dd>revision <code>{{ r.model.revision }}</code>, recorded {{ r.model.recorded_at }}</dd>
</dl>
{% else %}<p>No approval was recorded, so no model facts are on record.</p>{% endif %}

<h2 id="approvals">2. Approvals and risk acceptances</h2>
{% if r.approvals %}
<table>
<tr><th>Version</th><th>Revision</th><th>Approved by</th><th>Approved at</th><th>Conditions</th><th>Approval signature</th>
<th>Risk acceptance</th><th>Accepted by</th><th>Risk signature</th><th>Written by</th></tr>
{% for a in r.approvals %}
<tr class="approval"><td>{{ a.version }}</td><td><code title="{{ a.revision }}">{{ a.revision | short }}</code></td>
<td class="approver">{{ a.approved_by }}</td><td>{{ a.approved_at }}</td><td>{{ a.conditions or "none" }}</td>
<td>{{ sig(a.approval_signature) }}</td><td>{{ a.risk_acceptance }}</td><td>{{ a.risk_accepted_by }}</td>
<td>{{ sig(a.risk_signature) }}</td><td>{{ a.written_by or "-" }}{% if a.asserted_through_git %} (asserted through Git){% endif %}</td></tr>
{% endfor %}
</table>
<p class="note">Each approval names the full SHA-256 revision of the model, pod template, service, plan and governance settings it vouches for; a change to any of them needs a new approval.</p>
{% else %}<p>No approval recorded in this period.</p>{% endif %}

<h2 id="plan">3. Approved plans</h2>
{% for p in r.plans %}
<h3>Version {{ p.version }} (revision <code>{{ p.revision | short }}</code>)</h3>
<p>Analysis every {{ p.interval }}; failure limit {{ p.failure_limit }}, consecutive failure limit {{ p.consecutive_failure_limit }},
inconclusive limit {{ p.inconclusive_limit }}; progress deadline {{ p.progress_deadline }}; post-promotion watch {{ p.monitor_for }}; approval valid for {{ p.approval_ttl }}.</p>
<table><tr><th>Stage</th><th>Traffic weight</th><th>Duration</th><th>Manual promotion</th></tr>
{% for s in p.stages %}<tr><td>{{ s.name }}</td><td>{{ s.weight }}%</td><td>{{ s.duration }}</td><td>{{ "yes" if s.manual_promotion else "no" }}</td></tr>{% endfor %}
</table>
<table><tr><th>Metric</th><th>Pass when</th><th>No data</th><th>Error</th><th>Query</th></tr>
{% for m in p.metrics %}<tr><td>{{ m.name }}</td><td>{{ bounds(m) }}</td><td>{{ m.on_no_data }}</td><td>{{ m.on_error }}</td><td><code>{{ m.query }}</code></td></tr>{% endfor %}
</table>
{% else %}<p>No approved plan on record in this period.</p>{% endfor %}

<h2 id="attempts">4. Rollouts</h2>
{% for a in r.attempts %}
<section class="attempt" id="attempt-{{ a.number }}">
<h3>Rollout {{ a.number }}: version {{ a.version }} (revision <code>{{ a.revision | short }}</code>)</h3>
<p>Started {{ a.started_at }} ({{ a.started_by }}); {% if a.outcome %}ended {{ a.ended_at }}: <b>{{ a.outcome }}</b>{% else %}still running at the last record{% endif %}.</p>
{% if a.stages %}<table><tr><th>Stage</th><th>Started</th><th>Ended</th><th>Ended by</th></tr>
{% for s in a.stages %}<tr><td>{{ s.name }}</td><td>{{ s.started_at }}</td><td>{{ s.ended_at or "-" }}</td><td>{{ s.ended_by or "-" }}</td></tr>{% endfor %}
</table>{% endif %}
{% for c in charts[a.number] %}
<figure class="chart" data-metric="{{ c.metric }}">
{{ c.svg }}
<figcaption>{{ c.metric }}: pass when {{ c.threshold }}; {{ c.points_total }} measurements, {{ c.failures }} failed, {{ c.inconclusive }} inconclusive{% if c.points_drawn < c.points_total %}; chart shows {{ c.points_drawn }} of them (every failed and inconclusive one, and the lowest and highest of each time bucket){% endif %}.</figcaption>
</figure>
{% endfor %}
{% if a.rollbacks %}<h4>Rollbacks and their triggers</h4><table><tr><th>#</th><th>Time</th><th>Reason</th><th>What happened</th><th>Breaching measurements</th></tr>
{% for e in a.rollbacks %}<tr class="rollback"><td>{{ e.sequence }}</td><td>{{ e.time }}</td><td>{{ e.reason }}</td><td>{{ e.message }}</td>
<td>{% for p in e.evidence %}{{ p.time }} {{ p.stage }} {{ p.track }} {{ p.metric }}: value {{ p.text or "none" }} ({{ p.verdict }}, pass when {{ p.threshold }}) {{ p.reason }}<br>{% endfor %}</td></tr>{% endfor %}
</table>{% endif %}
{% if a.promotions %}<h4>Promotions</h4><table><tr><th>#</th><th>Time</th><th>Reason</th><th>To</th><th>Message</th></tr>
{% for e in a.promotions %}<tr><td>{{ e.sequence }}</td><td>{{ e.time }}</td><td>{{ e.reason }}</td><td>{{ e.to_phase }}</td><td>{{ e.message }}</td></tr>{% endfor %}
</table>{% endif %}
{% if a.requests %}<h4>Requests</h4>{{ requests(a.requests) }}{% endif %}
{% if a.drift %}<h4>Drift</h4>{{ drift(a.drift) }}{% endif %}
</section>
{% else %}<p>No rollout in this period.</p>{% endfor %}

<h2 id="requests">5. Requests (promote, abort, retry)</h2>
{% if r.requests %}{{ requests(r.requests) }}{% else %}<p>No request in this period.</p>{% endif %}

<h2 id="drift">6. Drift of the running workload</h2>
{% if r.drift %}{{ drift(r.drift) }}{% else %}<p>No drift detected in this period.</p>{% endif %}

<h2 id="verification">7. Verification of the records</h2>
<p>{% if r.verification.intact %}<span class="ok">Intact.</span>{% else %}<span class="bad">NOT intact.</span>{% endif %}
{{ r.verification.records }} records, sequence {{ r.verification.first_sequence }} to {{ r.verification.last_sequence }}, subject UID(s) {% for u in r.subject.uids %}<code>{{ u }}</code> {% endfor %}.
Checked: {{ r.verification.checked }}.</p>
{% if r.verification.problems %}<ul class="problems">{% for p in r.verification.problems %}<li>{{ p }}</li>{% endfor %}</ul>{% endif %}

<h2 id="controls">8. Control mapping</h2>
<table><tr><th>Framework</th><th>Control</th><th>Title</th><th>Evidence in this report</th><th>Sections</th></tr>
{% for c in r.controls %}<tr><td>{{ c.framework }}</td><td>{{ c.control }}</td><td>{{ c.title }}</td><td>{{ c.evidence }}</td>
<td>{% for s in c.sections %}<a href="#{{ s }}">{{ s }}</a> {% endfor %}</td></tr>{% endfor %}
</table>
<p class="note">The report shows what aigate recorded; the organisation's own processes behind these controls (risk assessment, impact assessment, roles) are documented elsewhere and referenced by the risk acceptance.</p>
</body>
</html>
"""
)

_REQUESTS = _ENV.from_string(
    """<table><tr><th>#</th><th>Time</th><th>Request</th><th>By</th><th>Value</th><th>Outcome</th></tr>
{% for e in events %}<tr class="request"><td>{{ e.sequence }}</td><td>{{ e.time }}</td><td>{{ e.request }}</td><td>{{ e.by or "unknown" }}</td>
<td><code>{{ e.value }}</code></td><td>{{ e.outcome or e.message }}</td></tr>{% endfor %}</table>"""
)
_DRIFT = _ENV.from_string(
    """<table><tr><th>#</th><th>Time</th><th>Version</th><th>What differed (reverted)</th></tr>
{% for e in events %}<tr class="drift"><td>{{ e.sequence }}</td><td>{{ e.time }}</td><td>{{ e.version }}</td><td>{{ e.message }}</td></tr>{% endfor %}</table>"""
)
_SIGNATURE = _ENV.from_string(
    """{% if s is none %}unsigned{% elif s.verified %}<span class="ok">verified</span> ({{ s.signer }}, key {{ s.key_fingerprint }}){% else %}<span class="bad">not verified</span>: {{ s.problem or "no reason recorded" }}{% endif %}"""
)


def _bounds(metric: object) -> str:
    parts = []
    if getattr(metric, "min", None) is not None:
        parts.append(f">= {metric.min:g}")
    if getattr(metric, "max", None) is not None:
        parts.append(f"<= {metric.max:g}")
    return ", ".join(parts) or "-"


class _ChartView:
    def __init__(self, chart: object, series: object) -> None:
        self.metric = series.metric
        self.svg = Markup(chart.svg)  # noqa: S704 (matplotlib's output: it escapes text itself)
        self.threshold = series.threshold or "-"
        self.points_total = chart.points_total
        self.points_drawn = chart.points_drawn
        self.failures = series.failures
        self.inconclusive = series.inconclusive


def render_html(report: Report) -> str:
    charts = {
        a.number: [
            _ChartView(render_chart(f"chart-{a.number}-{i}", s, a.stages), s)
            for i, s in enumerate(a.series)
        ]
        for a in report.attempts
    }
    return _TEMPLATE.render(
        r=report,
        charts=charts,
        max_points=MAX_POINTS_PER_TRACK,
        sig=lambda s: Markup(_SIGNATURE.render(s=s)),  # noqa: S704 (an autoescaped template)
        bounds=_bounds,
        requests=lambda events: Markup(_REQUESTS.render(events=events)),  # noqa: S704
        drift=lambda events: Markup(_DRIFT.render(events=events)),  # noqa: S704
    )
