"""The report's and the index's HTML (Jinja2 templates, rendered by jobs.core.report).

Everything a page needs is inline: styles, the SVG charts and the few lines of script that
sort the leaderboard by a clicked column. A page fetches nothing, so it opens from the
volume, a laptop copy or a CI artifact alike.
"""

from __future__ import annotations

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 70em; padding: 0 1em;
  color: #1d232a; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border-bottom: 1px solid #d8dde3; padding: .25em .6em; text-align: left; }
th { background: #f2f4f7; cursor: pointer; user-select: none; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fff6d6; }
pre { background: #f6f8fa; padding: .7em; white-space: pre-wrap; overflow-wrap: anywhere;
  font-size: 12.5px; }
.wide { overflow-x: auto; }
.bad { color: #b42318; font-weight: 600; } .ok { color: #067647; }
.muted { color: #667085; font-size: 12px; } svg { max-width: 100%; height: auto; }
nav a { margin-right: 1em; }
"""

SORTER = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var up = th.dataset.order !== "asc"; th.dataset.order = up ? "asc" : "desc";
      function key(r) { var t = r.cells[col].textContent.trim(), v = parseFloat(t);
        return isNaN(v) ? t : v; }
      rows.sort(function (a, b) { var x = key(a), y = key(b);
        var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0)
                                        : (typeof x === "number" ? -1 : 1);
        return up ? c : -c; });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

REPORT = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ summary.stage }}: {{ run.name }}</title>
<style>"""
    + STYLE
    + """</style></head><body>
<nav><a href="{{ index_link }}">all runs (index.html)</a></nav>
<h1>{{ summary.stage }}{% if run.name != summary.stage %} <span class="muted">{{ run.name
}}</span>{% endif %}</h1>
<p id="status" class="{{ 'ok' if run.finished and not run.failure else 'bad' }}">
{{ run.status }}</p>
<p class="muted">{{ summary.trials | length }} trials; tuned metric {{ summary.metric }}
({{ summary.mode }}){% if run.finished %}; wall time {{ summary.wall_time_s | num }} s{% endif %};
report written {{ generated | when }}.</p>
{% if not run.finished %}<p class="bad">No results.json yet: the trials below are what Tune saved
before the attempt ended (their status as far as they got).</p>{% endif %}

<h2>Best trial</h2>
{% if best_text %}<pre id="best">{{ best_text }}</pre>{% else %}<p>No trial reported
{{ summary.metric }}.</p>{% endif %}

{% if compared %}
<h2>Against the run before ({{ compared.other }})</h2>
<table id="compare"><thead><tr><th></th><th>this run</th><th>{{ compared.other }}</th>
<th>difference</th></tr></thead><tbody>
{% for line in compared.lines %}<tr><td>{{ line.name }}</td><td>{{ line.this }}</td>
<td>{{ line.other }}</td><td class="{{ 'bad' if line.worse }}">{{ line.difference }}{% if line.worse
%} worse by more than {{ compared.band }}{% endif %}</td></tr>
{% endfor %}</tbody></table>
<p class="muted"><a href="{{ compared.other_link }}">that run's report</a></p>
{% endif %}

<h2>Leaderboard</h2>
<p class="muted">Best first; click a column to sort.</p>
<div class="wide"><table id="leaderboard" class="sortable"><thead><tr>
{% for c in columns %}<th>{{ c }}</th>
{% endfor %}<th>logs</th></tr></thead><tbody>
{% for row in rows %}<tr class="{{ 'best' if loop.first and best_text }}" data-trial="{{ row[1] }}">
{% for v in row %}<td class="{{ 'n' if v is number }}">{{ v | num }}</td>{% endfor %}
<td>{% for name, href in trial_links.get(row[1], []) %}<a href="{{ href }}">{{ name }}</a> {% endfor
%}</td></tr>
{% endfor %}</tbody></table></div>

{% set errored = summary.trials | selectattr("status", "equalto", "errored") | list %}
{% if errored %}<pre id="errors" class="bad">{% for t in errored %}trial {{ t.trial_id }} errored{{
": " ~ t.error if t.error }}
{% endfor %}</pre>{% endif %}

<h2>Learning curves</h2>
{% if curves %}<figure id="curves">{{ curves | safe }}</figure>{% else %}<p>No epoch finished
yet.</p>{% endif %}

<h2>The search</h2>
{% if search %}<figure id="search">{{ search | safe }}</figure>{% else %}<p>No trial has a learning
rate and a {{ summary.metric }} to plot.</p>{% endif %}

<h2>Attempts</h2>
{% if timeline %}<figure id="timeline">{{ timeline | safe }}</figure>{% endif %}
<table id="attempts"><thead><tr><th>#</th><th>attempt</th><th>started</th><th>seconds</th>
<th>ended</th><th>nodes</th><th>nodes that left</th><th>driver log</th></tr></thead><tbody>
{% for a in attempts %}<tr><td class="n">{{ a.number }}</td><td>{{ a.name }}</td>
<td>{{ a.started | when }}</td><td class="n">{{ a.seconds | num }}</td>
<td class="{{ 'ok' if a.ok else 'bad' }}">{{ a.ended }}</td><td>{{ a.nodes }}</td>
<td class="n">{{ a.left }}</td><td><a href="{{ a.log }}">log</a></td></tr>
{% else %}<tr><td colspan="8">No attempt records (a run from before they were kept).</td></tr>
{% endfor %}</tbody></table>

<h2>Compute and cost</h2>
{% if cost_lines %}<pre id="cost">{% for line in cost_lines %}{{ line }}
{% endfor %}</pre>{% else %}<p>Not recorded yet (written when the run finishes).</p>{% endif %}
<script>"""
    + SORTER
    + """</script>
</body></html>
"""
)

INDEX = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ray-tune-k8s runs</title>
<style>"""
    + STYLE
    + """</style></head><body>
<h1>Runs <span class="muted">{{ root }}</span></h1>
<p class="muted">Every run of every stage on this volume, archived ones included, newest first
per stage; written {{ generated | when }}. Click a column to sort.</p>
<table id="runs" class="sortable"><thead><tr><th>stage</th><th>run</th><th>status</th>
<th>started</th><th>trials</th><th>best</th><th>time (s)</th><th>accelerator-hours</th>
<th>on demand</th><th>Spot</th></tr></thead><tbody>
{% for r in rows %}<tr data-run="{{ r.name }}"><td>{{ r.stage }}</td>
<td>{% if r.has_report %}<a href="{{ r.report }}">{{ r.name }}</a>{% else %}{{ r.name }}{% endif
%}</td><td class="{{ 'ok' if r.ok else 'bad' }}">{{ r.status }}</td><td>{{ r.started | when }}</td>
<td class="n">{{ r.trials }}</td><td class="n">{% if r.best is not none
%}{{ r.metric }} {{ r.best | num }}{% else %}-{% endif %}</td>
<td class="n">{{ r.wall | num }}</td><td>{{ r.hours }}</td>
<td class="n">{{ r.on_demand }}</td><td class="n">{{ r.spot }}</td></tr>
{% else %}<tr><td colspan="10">No runs yet.</td></tr>
{% endfor %}</tbody></table>
<script>"""
    + SORTER
    + """</script>
</body></html>
"""
)
