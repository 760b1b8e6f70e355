"""A picture of a run: one self-contained HTML page, readable with no network at all.

The page shows the rows by status, the requests per second with the throttled answers
marked, the latency percentiles, the error codes with a count and an example request id
each, the settings and the credentials' source (masked, as ``whoami`` shows them), and
when the run started and ended.  A run across regions adds each region's part (``By
region``): its endpoint, images, rows by status, requests, throttled answers, latency
percentiles and why it stopped — the figures the summary's ``regions`` object holds
(``regional.RegionFigures``), so the two never disagree.

The charts are inline SVG drawn by the small templates below, not by a chart library:
two bar charts do not need one, and a library's defaults (pygal's tooltip script is loaded
from the web) would have to be turned off one by one to keep the page offline.  Every value
on the page — image ids, error codes and messages, file names — goes through
``html.escape``, and the page's Content-Security-Policy forbids scripts and any fetch, so
a hostile value can neither run nor call out.  Each number carries a ``data-value``
attribute, for tests and scripts reading the page back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path

from batchpatch.exits import EXIT_MEANINGS
from batchpatch.files import atomic_write
from batchpatch.job import PLAN_REFUSALS, RunResult
from batchpatch.models import Status
from batchpatch.telemetry import PERCENTILES, Second, Telemetry

#: Bars a chart draws at most; longer runs are drawn in bins of several seconds.
MAX_BARS = 300
_CHART_WIDTH, _CHART_HEIGHT, _MARGIN = 760, 220, 40

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .4em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { word-break: break-all; }
.succeeded, .unchanged { background: #e3f4e1; } .failed, .invalid { background: #fbe3e3; }
.skipped, .not_attempted { background: #f1f1f1; } .planned { background: #e6eefb; }
svg text { font-size: 11px; fill: #444; }
.bar { fill: #4a7bd0; } .throttled { fill: #d9534f; } .axis { stroke: #888; }
"""
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def summary_page_path(summary: Path) -> Path:
    """Where ``--summary PATH`` puts its page: beside it, with ``.html`` for its
    extension (``summary.json`` → ``summary.html``)."""
    page = summary.with_suffix(".html")
    return page if page != summary else summary.with_name(summary.name + ".html")


def write_page(
    path: Path,
    result: RunResult,
    telemetry: Telemetry,
    *,
    settings: Mapping[str, object] | None = None,
    credentials: Sequence[str] = (),
) -> Path:
    """Write the page of ``result`` (atomically) at ``path``."""
    page = render_page(result, telemetry, settings=settings, credentials=credentials)
    return atomic_write(path, lambda temporary: temporary.write_text(page, encoding="utf-8"))


def render_page(
    result: RunResult,
    telemetry: Telemetry,
    *,
    settings: Mapping[str, object] | None = None,
    credentials: Sequence[str] = (),
) -> str:
    """The page, as text (see the module docstring)."""
    title = f"batchpatch run of {result.sheet.path.name}"
    sections = [
        f"<h1>{escape(title)}</h1>",
        _overview(result, telemetry),
        "<h2>Rows by status</h2>",
        _statuses(result),
        *_by_region(result),
        "<h2>Requests per second</h2>",
        _rate_chart(telemetry),
        "<h2>Latency</h2>",
        _latency(telemetry),
        "<h2>Answers</h2>",
        _table(
            "answers",
            ("answer", "requests"),
            [(kind, n) for kind, n in sorted(telemetry.kinds.items())],
        ),
        _table(
            "http-statuses",
            ("HTTP status", "requests"),
            [(status, n) for status, n in sorted(telemetry.statuses.items())],
        ),
        "<h2>Error codes</h2>",
        "<p>In answers to requests:</p>",
        _errors(telemetry),
        "<p>Found by the plan, before any write (no request counted):</p>",
        _plan_errors(result),
        "<h2>Settings</h2>",
        _table("settings", ("setting", "value"), list((settings or {}).items())),
        "<h2>Credentials</h2>",
        "<ul id='credentials'>" + "".join(f"<li>{escape(c)}</li>" for c in credentials) + "</ul>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_POLICY}\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _overview(result: RunResult, telemetry: Telemetry) -> str:
    started, ended = telemetry.dates()
    code = result.exit_code
    rows: list[tuple[str, object]] = [
        ("sheet", str(result.sheet.path)),
        ("report", str(result.report_path)),
        ("exit code", f"{code}: {EXIT_MEANINGS.get(code, '')}"),
        ("stopped early", result.stop_reason or "no"),
        ("started", started),
        ("ended", ended),
        ("duration (s)", round(telemetry.duration(), 3)),
        ("rows", len(result.rows)),
        ("images", len(result.sheet.patches)),
        ("requests", telemetry.requests),
        ("throttled answers", telemetry.throttled),
    ]
    return _table("overview", ("", ""), rows, head=False)


def _statuses(result: RunResult) -> str:
    counts = result.counts
    rows = [(str(status), counts[str(status)]) for status in Status if counts[str(status)]]
    return _table("statuses", ("status", "rows"), rows, classes=True)


def _by_region(result: RunResult) -> list[str]:
    """Each region's figures (a run across regions only): one row a region, and its rows
    by status."""
    if not result.regions:
        return []
    names = [name for name, _ in PERCENTILES]
    figures = [
        (
            f.region,
            f.endpoint,
            f.images,
            f.requests,
            f.throttled,
            *("" if f.latency_ms.get(n) is None else f.latency_ms[n] for n in names),
            f.stop_reason or "no",
        )
        for f in result.regions
    ]
    header = (
        "region",
        "endpoint",
        "images",
        "requests",
        "throttled",
        *(f"{n} (ms)" for n in names),
        "stopped early",
    )
    statuses = [str(s) for s in Status if any(f.counts.get(str(s)) for f in result.regions)]
    counts = [(f.region, *(f.counts.get(s, 0) for s in statuses)) for f in result.regions]
    return [
        "<h2>By region</h2>",
        _table("regions", header, figures),
        _table("region-statuses", ("region", *statuses), counts),
    ]


def _latency(telemetry: Telemetry) -> str:
    values = [(name, telemetry.latency.percentile(share)) for name, share in PERCENTILES]
    values.append(("max", telemetry.latency.largest if telemetry.latency.count else None))
    rows = [(name, "" if v is None else round(v * 1000, 1)) for name, v in values]
    table = _table("latency", ("percentile", "ms"), rows)
    return table + _latency_chart([(n, v * 1000) for n, v in values if v is not None])


def _errors(telemetry: Telemetry) -> str:
    rows = sorted(telemetry.codes.items(), key=lambda item: (-item[1].count, item[0]))
    return _table(
        "errors",
        ("error code", "answers", "example request id"),
        [(code, seen.count, seen.request_id) for code, seen in rows],
    )


def _plan_errors(result: RunResult) -> str:
    """The error codes the plan gave images (``not_found``, ``not_active``): how many
    images each, and one of them — counted here, not as requests or answers."""
    refusals = set(PLAN_REFUSALS.values())
    images: dict[str, dict[str, None]] = {}
    for row in result.rows:
        if row.outcome.error_code in refusals:
            images.setdefault(row.outcome.error_code, {})[row.outcome.image_id] = None
    rows = sorted(images.items(), key=lambda item: (-len(item[1]), item[0]))
    return _table(
        "plan-errors",
        ("error code", "images", "example image id"),
        [(code, len(ids), next(iter(ids))) for code, ids in rows],
    )


def _table(
    ident: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    head: bool = True,
    classes: bool = False,
) -> str:
    """A table whose numbers are right-aligned and carry ``data-value``; with ``classes``
    each row is classed by its first cell (a status, for its colour)."""
    lines = [f"<table id='{ident}'>"]
    if head:
        lines.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        css = f" class='{escape(str(row[0]))}'" if classes else ""
        lines.append(f"<tr{css}>" + "".join(_cell(value) for value in row) + "</tr>")
    if len(lines) == 1 + head:
        lines.append(f"<tr><td colspan='{len(header)}'>none</td></tr>")
    return "\n".join(lines) + "</table>"


def _cell(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = f"{value:,}" if isinstance(value, int) else f"{value:,.3f}".rstrip("0").rstrip(".")
        return f"<td class='n' data-value='{value}'>{text}</td>"
    return f"<td>{escape(str(value))}</td>"


def _binned(seconds: Sequence[Second]) -> tuple[int, list[Second]]:
    """The seconds in bins of ``width`` seconds, so that at most ``MAX_BARS`` remain."""
    width = max(1, math.ceil(len(seconds) / MAX_BARS))
    bins = []
    for start in range(0, len(seconds), width):
        chunk = seconds[start : start + width]
        bins.append(
            Second(
                sum(s.requests for s in chunk),
                sum(s.throttled for s in chunk),
                sum(s.failed for s in chunk),
            )
        )
    return width, bins


def _rate_chart(telemetry: Telemetry) -> str:
    """Requests started each second as bars, the throttled part of each in red."""
    width, bins = _binned(telemetry.per_second())
    if not bins:
        return "<p>No request was sent.</p>"
    top = max(b.requests for b in bins) / width
    inner_w, inner_h = _CHART_WIDTH - 2 * _MARGIN, _CHART_HEIGHT - 2 * _MARGIN
    step = inner_w / len(bins)
    bars = []
    for index, b in enumerate(bins):
        x = _MARGIN + index * step
        all_h, red_h = (b.requests / width) / top * inner_h, (b.throttled / width) / top * inner_h
        label = f"{index * width} to {(index + 1) * width} s: {b.requests} requests"
        label += f", {b.throttled} throttled" if b.throttled else ""
        bars.append(
            f"<g data-requests='{b.requests}' data-throttled='{b.throttled}'>"
            f"<title>{escape(label)}</title>"
            f"<rect class='bar' x='{x:.1f}' y='{_MARGIN + inner_h - all_h:.1f}' "
            f"width='{max(step - 1, 0.5):.1f}' height='{all_h:.1f}'/>"
            + (
                f"<rect class='throttled' x='{x:.1f}' y='{_MARGIN + inner_h - red_h:.1f}' "
                f"width='{max(step - 1, 0.5):.1f}' height='{red_h:.1f}'/>"
                if b.throttled
                else ""
            )
            + "</g>"
        )
    per = "second" if width == 1 else f"second (average of {width} s bins)"
    axis = (
        f"<line class='axis' x1='{_MARGIN}' y1='{_MARGIN + inner_h}' "
        f"x2='{_MARGIN + inner_w}' y2='{_MARGIN + inner_h}'/>"
        f"<text x='{_MARGIN}' y='{_MARGIN - 8}'>{top:.1f} requests per {per}</text>"
        f"<text x='{_MARGIN}' y='{_CHART_HEIGHT - 12}'>0 s</text>"
        f"<text x='{_MARGIN + inner_w}' y='{_CHART_HEIGHT - 12}' text-anchor='end'>"
        f"{len(bins) * width} s</text>"
        f"<rect class='throttled' x='{_CHART_WIDTH - 170}' y='{_MARGIN - 18}' "
        "width='10' height='10'/>"
        f"<text x='{_CHART_WIDTH - 155}' y='{_MARGIN - 9}'>throttled answers</text>"
    )
    return (
        f"<svg id='rate-chart' xmlns='http://www.w3.org/2000/svg' width='{_CHART_WIDTH}' "
        f"height='{_CHART_HEIGHT}' role='img' aria-label='requests per second'>"
        + axis
        + "".join(bars)
        + "</svg>"
    )


def _latency_chart(values: Sequence[tuple[str, float]]) -> str:
    """The percentiles as horizontal bars on one scale."""
    if not values:
        return ""
    top = max(v for _, v in values) or 1.0
    row_h, label_w, bar_w = 24, 60, _CHART_WIDTH - 220
    parts = []
    for index, (name, ms) in enumerate(values):
        y = index * row_h + 6
        length = max(ms / top * bar_w, 1.0)
        parts.append(
            f"<text x='0' y='{y + 13}'>{escape(name)}</text>"
            f"<rect class='bar' x='{label_w}' y='{y}' width='{length:.1f}' height='16'/>"
            f"<text x='{label_w + length + 6:.1f}' y='{y + 13}'>{ms:,.1f} ms</text>"
        )
    return (
        f"<svg id='latency-chart' xmlns='http://www.w3.org/2000/svg' width='{_CHART_WIDTH}' "
        f"height='{len(values) * row_h + 12}' role='img' aria-label='latency percentiles'>"
        + "".join(parts)
        + "</svg>"
    )
