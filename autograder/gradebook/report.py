"""A single self-contained HTML report on the gradebook, for instructors.

Everything is inline (CSS, and matplotlib plots as base64 PNG), so the file can be mailed or
opened from anywhere. Sections: an overview per assignment, score distributions, what waits
for a grader (written answers not graded yet, manual overrides to review after a regrade),
the tests students fail most often, late submissions and missing submissions.
"""

from __future__ import annotations

import base64
import html
import io
import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from nbgrader.api import Gradebook

from autograder.gradebook.durations import describe_duration
from autograder.gradebook.table import display_name, final_score, waiting_cells

TOP_FAILURES = 20

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { border-bottom: 3px solid #3b6ea8; padding-bottom: .3rem; }
h2 { margin-top: 2.4rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; color: #24466e; }
h3 { margin-bottom: .4rem; }
.meta { color: #57606a; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .93rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f0f4f8; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
.bar { display: inline-block; height: .8rem; background: #d1495b; vertical-align: middle; margin-right: .4rem; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem; background: #fff; }
figcaption { font-weight: 600; text-align: center; }
.none { color: #57606a; font-style: italic; }
.tag { display: inline-block; border-radius: 10px; padding: 0 .5rem; font-size: .85rem; }
.late { background: #fff1c2; } .missing { background: #ffd8d3; }
code { background: #f0f4f8; padding: 0 .25rem; border-radius: 3px; }
"""


def write_html_report(db_url: str, course_id: str, path: str | Path,
                      failures: dict[str, dict[str, float]] | None = None, now: datetime | None = None) -> Path:
    """Write the report to `path`; `failures` maps week -> {test name: failure rate in [0, 1]}.
    A submission counts as missing once its week's due date has passed (`now`: the clock)."""
    data = _collect(db_url, course_id, now or datetime.now(timezone.utc))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Gradebook report: {_e(course_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Gradebook report: {_e(course_id)}</h1>",
        f'<p class="meta">Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from '
        f"<code>{_e(_safe_url(db_url))}</code>. {len(data['students'])} students, "
        f"{len(data['assignments'])} assignments, {data['n_submissions']} submissions. "
        "Scores are nbgrader's (a grader's manual score replaces the autograder's), "
        "after the late penalty.</p>",
        _overview(data),
        _distributions(data),
        _waiting(data),
        _failures(failures or {}),
        _late(data),
        _missing(data),
        "</body></html>",
    ]
    path = Path(path)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _collect(db_url: str, course_id: str, now: datetime) -> dict:
    with Gradebook(db_url, course_id=course_id) as gb:
        students = {s.id: display_name(s.first_name, s.last_name, s.id) for s in gb.students}
        assignments = []
        late: list[dict] = []
        missing: list[dict] = []
        waiting: list[dict] = []
        n_submissions = 0
        for assignment in sorted(gb.assignments, key=lambda a: a.name):
            submitted = {}
            for sub in assignment.submissions:
                n_submissions += 1
                submitted[sub.student.id] = final_score(sub)
                waiting.extend({"assignment": assignment.name, "student": sub.student.id,
                                "name": students.get(sub.student.id, sub.student.id), **item}
                               for item in waiting_cells(sub))
                seconds = sub.total_seconds_late
                if seconds and seconds > 0:
                    late.append({"assignment": assignment.name, "student": sub.student.id,
                                 "name": students.get(sub.student.id, sub.student.id),
                                 "timestamp": sub.timestamp, "duedate": sub.duedate, "seconds": seconds})
            absent = sorted(set(students) - set(submitted)) if _past(assignment.duedate, now) else []
            missing.extend({"assignment": assignment.name, "student": s, "name": students[s]} for s in absent)
            assignments.append({"name": assignment.name, "max_score": float(assignment.max_score or 0.0),
                                "duedate": assignment.duedate, "scores": submitted, "missing": len(absent),
                                "late": sum(1 for item in late if item["assignment"] == assignment.name)})
    return {"students": students, "assignments": assignments, "late": late, "missing": missing,
            "waiting": waiting, "n_submissions": n_submissions}


def _overview(data: dict) -> str:
    out = ["<h2>Overview</h2>"]
    if not data["assignments"]:
        return out[0] + '<p class="none">No assignments in the gradebook yet.</p>'
    out.append("<table><tr><th>Assignment</th><th>Due (UTC)</th><th class='num'>Max</th>"
               "<th class='num'>Submitted</th><th class='num'>Mean</th><th class='num'>Median</th>"
               "<th class='num'>Min</th><th class='num'>Max scored</th><th class='num'>Late</th>"
               "<th class='num'>Missing</th></tr>")
    for a in data["assignments"]:
        scores = list(a["scores"].values())
        stats = ([statistics.mean(scores), statistics.median(scores), min(scores), max(scores)]
                 if scores else [None] * 4)
        out.append(f"<tr><td>{_e(a['name'])}</td><td>{_when(a['duedate'])}</td>"
                   f"<td class='num'>{_n(a['max_score'])}</td>"
                   f"<td class='num'>{len(scores)} / {len(data['students'])}</td>"
                   + "".join(f"<td class='num'>{_n(v)}</td>" for v in stats)
                   + f"<td class='num'>{a['late']}</td><td class='num'>{a['missing']}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _distributions(data: dict) -> str:
    out = ["<h2>Score distributions</h2>", '<div class="plots">']
    for a in data["assignments"]:
        scores = list(a["scores"].values())
        if not scores:
            out.append(f'<figure><figcaption>{_e(a["name"])}</figcaption>'
                       '<p class="none">No submissions yet.</p></figure>')
            continue
        png = _histogram(scores, a["max_score"], a["name"])
        out.append(f'<figure><figcaption>{_e(a["name"])}</figcaption>'
                   f'<img alt="Score distribution of {_e(a["name"])}" width="420" '
                   f'src="data:image/png;base64,{png}"></figure>')
    out.append("</div>")
    if not data["assignments"]:
        out.append('<p class="none">No assignments in the gradebook yet.</p>')
    return "\n".join(out)


def _histogram(scores: list[float], max_score: float, title: str) -> str:
    fig = Figure(figsize=(5.6, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    top = max(max_score, max(scores), 1.0)
    bins = min(20, max(5, int(top)))
    ax.hist(scores, bins=bins, range=(0, top), color="#3b6ea8", edgecolor="white")
    mean = statistics.mean(scores)
    ax.axvline(mean, color="#d1495b", linestyle="--", linewidth=1.5, label=f"mean {mean:.1f}")
    ax.set_xlabel(f"score (out of {max_score:g})")
    ax.set_ylabel("students")
    ax.set_title(f"{title}: {len(scores)} submissions", fontsize=10)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _failures(failures: dict[str, dict[str, float]]) -> str:
    out = ["<h2>Most often failed tests</h2>"]
    rows = [(week, test, rate) for week, tests in failures.items() for test, rate in tests.items() if rate > 0]
    if not rows:
        out.append('<p class="none">No failure data given, or no test failed.</p>')
        return "\n".join(out)
    out.append(f"<p>Share of graded submissions that failed each test; the {TOP_FAILURES} most failed "
               "per assignment.</p>")
    for week in sorted({week for week, _, _ in rows}):
        week_rows = sorted(((t, r) for w, t, r in rows if w == week), key=lambda item: (-item[1], item[0]))
        out.append(f"<h3>{_e(week)}</h3>")
        out.append("<table><tr><th>Test</th><th class='num'>Failure rate</th></tr>")
        for test, rate in week_rows[:TOP_FAILURES]:
            width = max(1, round(120 * min(rate, 1.0)))
            out.append(f"<tr><td><code>{_e(test)}</code></td><td class='num'>"
                       f'<span class="bar" style="width:{width}px"></span>{rate * 100:.0f}%</td></tr>')
        out.append("</table>")
    return "\n".join(out)


def _waiting(data: dict) -> str:
    out = ["<h2>Waiting for a grader</h2>"]
    if not data["waiting"]:
        out.append('<p class="none">Nothing: every written answer is graded and no override needs review.</p>')
        return "\n".join(out)
    out.append("<p>Grade these in formgrader; the scores above count a pending written answer as 0 until then, "
               "and an override stays in force until reviewed.</p>")
    out.append("<table><tr><th>Assignment</th><th>Student</th><th>ID</th><th>Cell</th><th class='num'>Points</th>"
               "<th>Why</th></tr>")
    for item in sorted(data["waiting"], key=lambda i: (i["assignment"], i["student"], i["cell"])):
        out.append(f"<tr><td>{_e(item['assignment'])}</td><td>{_e(item['name'])}</td><td>{_e(item['student'])}</td>"
                   f"<td><code>{_e(item['cell'])}</code></td><td class='num'>{_n(item['points'])}</td>"
                   f"<td><span class='tag late'>{_e(item['why'])}</span></td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _late(data: dict) -> str:
    out = ["<h2>Late submissions</h2>"]
    if not data["late"]:
        out.append('<p class="none">No late submissions (or no due dates set).</p>')
        return "\n".join(out)
    out.append("<table><tr><th>Assignment</th><th>Student</th><th>ID</th><th>Submitted (UTC)</th>"
               "<th>Due (UTC, with extension)</th><th class='num'>Late by</th></tr>")
    for item in sorted(data["late"], key=lambda i: (i["assignment"], -i["seconds"])):
        out.append(f"<tr><td>{_e(item['assignment'])}</td><td>{_e(item['name'])}</td>"
                   f"<td>{_e(item['student'])}</td><td>{_when(item['timestamp'])}</td>"
                   f"<td>{_when(item['duedate'])}</td>"
                   "<td class='num'><span class='tag late'>"
                   f"{describe_duration(timedelta(seconds=item['seconds']))}</span></td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _past(due: datetime | None, now: datetime) -> bool:
    """Whether a due date (nbgrader keeps them as naive UTC) has passed; no due date: always due."""
    return due is None or _utc(due) <= _utc(now)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _missing(data: dict) -> str:
    out = ["<h2>Missing submissions</h2>"]
    if not data["missing"]:
        out.append('<p class="none">Every student has a submission for every assignment.</p>')
        return "\n".join(out)
    out.append("<table><tr><th>Assignment</th><th>Student</th><th>ID</th></tr>")
    for item in sorted(data["missing"], key=lambda i: (i["assignment"], i["student"])):
        out.append(f"<tr><td>{_e(item['assignment'])}</td><td>{_e(item['name'])}</td>"
                   f"<td><span class='tag missing'>{_e(item['student'])}</span></td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")


def _when(moment: datetime | None) -> str:
    return "–" if moment is None else _e(moment.strftime("%Y-%m-%d %H:%M"))


def _safe_url(db_url: str) -> str:
    """The database url without a password."""
    if "@" in db_url and "://" in db_url:
        scheme, rest = db_url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return db_url
