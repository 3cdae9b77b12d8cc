"""A recording as one self-contained HTML page (``-o report.html``).

Why: a picture to attach to a ticket or open on a laptop, without Perfetto or
a network. The page holds, for each target, the verdict and the wait-for chain
(an SVG diagram), then CPU, RSS and GPU over time per process (inline SVG
polylines, from pyimpact.analyse.history.usage), the story's waits, and what could not
be seen. No script, no external resource: a Content-Security-Policy of
``default-src 'none'`` makes any such load fail loudly in the browser
(tests/test_html_report.py checks in headless Chromium that none happens).

Every string from the recording (comm, argv, paths, resources) came from other
processes: it is escaped here (html.escape after pyimpact.text.clean
has made controls, bidi characters and undecodable bytes visible), never
pasted as markup.
"""
from __future__ import annotations

import html
from typing import Iterable, List

from .. import __version__
from ..analyse.history.usage import UsageChart, usage_charts
from ..errors import NotInRecording
from ..formats import human_bytes, seconds, utc_time
from ..text import clean

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 640, 200, 64, 12, 12, 28

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:980px;color:#222;padding:0 12px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}table{border-collapse:collapse;margin:6px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}
.meta td:first-child{color:#555}.verdict{font-weight:600;padding:2px 8px;border-radius:4px;color:#fff}
.hung{background:#c0392b}.ok{background:#27ae60}.warn{background:#d68910}
.note{color:#666;font-size:12px}svg{display:block;margin:4px 0 12px}code{background:#f4f4f4;padding:0 3px}
.legend span{display:inline-block;margin-right:14px;font-size:12px}.sw{display:inline-block;width:10px;
height:10px;margin-right:4px;vertical-align:middle}
"""


def esc(text) -> str:
    """Untrusted text as HTML: escaped visibly by ``clean`` (``\\n``,
    ``\\x1b``, ``\\xff``...), then markup escaped."""
    return html.escape(clean(text), quote=True)


def _human(v: float, unit: str) -> str:
    if unit == "bytes":
        return human_bytes(v)
    if unit.startswith("%"):
        return f"{v:.0f}%" if v >= 10 or v == 0 else f"{v:.1f}%"
    return f"{v:.3g}"


def chart_svg(chart: UsageChart) -> str:
    """One line chart as inline SVG: axes, 4 grid lines, a polyline per series."""
    series = [s for s in chart.series if s.points]
    if not series:
        return f'<p class="note">{esc(chart.title)}: {esc(chart.source)}</p>'
    xs = [t for s in series for t, _ in s.points]
    ys = [v for s in series for _, v in s.points]
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x1 = x0 + 1.0
    y1 = max(ys) * 1.1 if max(ys) > 0 else 1.0
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def px(t: float) -> float:
        return PAD_L + (t - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return PAD_T + ph - v / y1 * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'role="img" aria-label="{esc(chart.title)}">',
           f'<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>']
    for i in range(5):
        v = y1 * i / 4
        y = py(v)
        out.append(f'<line x1="{PAD_L}" x2="{PAD_L + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#555">'
                   f'{esc(_human(v, chart.unit))}</text>')
    for i in range(5):
        t = x0 + (x1 - x0) * i / 4
        out.append(f'<text x="{px(t):.1f}" y="{H - 8}" font-size="11" text-anchor="middle" fill="#555">'
                   f'{seconds(t)}</text>')
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        pts = " ".join(f"{px(t):.1f},{py(v):.1f}" for t, v in s.points)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}">'
                   f'<title>{esc(s.label)}</title></polyline>')
        if len(s.points) == 1:
            t, v = s.points[0]
            out.append(f'<circle cx="{px(t):.1f}" cy="{py(v):.1f}" r="3" fill="{colour}"/>')
    out.append("</svg>")
    legend = "".join(f'<span><i class="sw" style="background:{COLOURS[i % len(COLOURS)]}"></i>{esc(s.label)}</span>'
                     for i, s in enumerate(series))
    return "\n".join(out) + f'\n<div class="legend">{legend}</div>' \
        f'<p class="note">{esc(chart.unit)}; seconds since the recording started; from {esc(chart.source)}</p>'


def chain_svg(chain: List[dict], cycle: bool = False) -> str:
    """The wait-for chain as boxes joined by arrows labelled with what is waited on."""
    if not chain:
        return '<p class="note">no wait-for chain (nothing waits on anything owed)</p>'
    box_w, box_h, gap = 560, 46, 38
    height = len(chain) * box_h + (len(chain) - 1) * gap + 8 + (gap if cycle else 0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{box_w + 260}" height="{height}" '
           f'role="img" aria-label="wait-for chain">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for i, link in enumerate(chain):
        y = 4 + i * (box_h + gap)
        who = f"pid {link.get('pid')} thread {link.get('tid')} ({link.get('name', '')})"
        state = f"state {link.get('state', '?')}, {link.get('activity', '')}"
        py_at = link.get("python") or link.get("end") or ""
        fill = "#fdecea" if i == len(chain) - 1 and not cycle else "#eef4fb"
        out.append(f'<rect x="4" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="{fill}" stroke="#888"/>')
        out.append(f'<text x="14" y="{y + 18}" font-size="13" font-weight="600">{esc(who)}</text>')
        out.append(f'<text x="14" y="{y + 36}" font-size="12" fill="#444">{esc(state)}'
                   f'{(" — " + esc(py_at)) if py_at else ""}</text>')
        waits = link.get("waits_on")
        if waits and i + 1 < len(chain):
            y_a, y_b = y + box_h, y + box_h + gap
            out.append(f'<line x1="40" y1="{y_a}" x2="40" y2="{y_b - 2}" stroke="#555" stroke-width="2" '
                       'marker-end="url(#arrow)"/>')
            label = f"waits on {waits.get('kind', '?')}: {waits.get('resource', '')}"
            out.append(f'<text x="52" y="{y_a + gap / 2 + 4}" font-size="12" fill="#333">{esc(label[:110])}</text>')
    if cycle:
        y = height - gap / 2
        out.append(f'<text x="14" y="{y}" font-size="12" fill="#c0392b">↺ the last waits on the first: a cycle'
                   '</text>')
    out.append("</svg>")
    return "\n".join(out)


def _verdict_class(verdict: dict) -> str:
    if verdict.get("hung"):
        return "hung"
    return "ok" if verdict.get("class") in ("idle", "progressing") else "warn"


def _diagnosis_html(d: dict) -> Iterable[str]:
    v = d.get("verdict", {})
    yield f'<h3>pid {esc(d.get("pid"))}: <span class="verdict {_verdict_class(v)}">{esc(v.get("class", "?"))}</span>' \
          f' <span class="note">confidence {esc(v.get("confidence", "?"))}</span></h3>'
    yield f'<p>{esc(v.get("summary", ""))}</p>'
    cyc = d.get("cycle") or []
    yield chain_svg(cyc if cyc else d.get("chain") or [], cycle=bool(cyc))
    for line in d.get("advice") or []:
        yield f"<p>→ {esc(line)}</p>"


def _meta_rows(rec) -> Iterable[str]:
    m = rec.metadata
    started = m.started_at_ns
    when = utc_time(int(started), "%Y-%m-%d %H:%M:%S UTC") if started else "?"
    def known(v):
        return "?" if v is None else v

    rows = [("host", known(m.host)), ("kernel", f"{known(m.kernel)} ({known(m.machine)})"),
            ("started", when), ("duration", seconds(m.duration_s or 0, 2)),
            ("mode", known(m.mode)),
            ("targets", ", ".join(str(t.get("pid")) for t in (m.targets or [])) or "—"),
            ("events", f"{len(rec.events)}"),
            ("lost events", ", ".join(f"{k} {v}" for k, v in (m.lost or {}).items()) or "0"),
            ("ended", known(m.end_reason)), ("recorded by", f"pyimpact {known(m.tool_version)}")]
    for k, v in rows:
        yield f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>"


def render(rec) -> str:
    """The page, as a string."""
    from ..analyse.hang.diagnose import diagnose
    from ..analyse.timeline_summary import tell

    diagnoses, problems = [], []
    for t in (rec.metadata.targets or []):
        try:
            diagnoses.append(diagnose(rec, int(t["pid"])).to_json())
        except NotInRecording as err:
            problems.append(f"pid {t.get('pid')}: no diagnosis ({err})")
    story = tell(rec).to_dict()
    parts = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
             '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f'<title>pyimpact report — {esc(rec.metadata.host or "")}</title>',
             f'<style>{CSS}</style></head><body>',
             '<h1>pyimpact report</h1>',
             f'<table class="meta">{"".join(_meta_rows(rec))}</table>',
             '<h2>Diagnosis and wait-for chain</h2>']
    parts += [p for d in diagnoses for p in _diagnosis_html(d)] or ['<p class="note">no targets to diagnose</p>']
    parts += [f'<p class="note">{esc(p)}</p>' for p in problems]
    parts.append('<h2>Resources over time, per process</h2>')
    for chart in usage_charts(rec):
        parts.append(f"<h3>{esc(chart.title)}</h3>")
        parts.append(chart_svg(chart))
    waits = story.get("waits") or []
    if waits:
        parts.append('<h2>Longest waits</h2><table><tr><th>process</th><th>on</th><th>count</th><th>total</th></tr>')
        for w in waits[:20]:
            parts.append(f"<tr><td>{esc(w.get('pid', ''))} {esc(w.get('comm', ''))}</td>"
                         f"<td>{esc(w.get('what', w.get('syscall', '')))}</td><td>{esc(w.get('count', ''))}</td>"
                         f"<td>{seconds(w.get('total_s', 0) or 0, 3)}</td></tr>")
        parts.append("</table>")
    unavailable = rec.metadata.unavailable or []
    if unavailable:
        parts.append("<h2>Not seen</h2><ul>")
        parts += [f"<li>{esc(u.get('what'))}: {esc(u.get('why'))}</li>" for u in unavailable]
        parts.append("</ul>")
    parts.append(f'<p class="note">written by pyimpact {esc(__version__)}; self-contained: no script, '
                 'no network</p></body></html>')
    return "\n".join(parts) + "\n"


def write(rec, out) -> None:
    """Write to the binary file object ``out`` (the atomic writer's descriptor)."""
    out.write(render(rec).encode("utf-8"))
