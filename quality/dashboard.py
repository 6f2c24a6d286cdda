"""The insights dashboard's figures, for the privacy office rather than the annotators.

Each figure is one aggregate query in PostgreSQL (no rows are pulled into Python to be counted), so the page
stays fast at 100,000 documents. Still, all of them take about a second there, so a reader is served stored
figures and a worker recomputes them after a change (`dashboard_data`). Every chart is returned with its
table rows, which the page shows and offers as CSV.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.safestring import mark_safe

from annotation.models import Annotation, AnnotationLabel, AuditEvent, Document, ImportBatch, Label, Project
from learning.models import ModelVersion
from learning.selectors import active_model_version
from quality import charts
from quality import dashboard_portable as _portable
from quality import selectors as quality_selectors
from quality.agreement import Estimate
from quality.models import DashboardFigures
from quality.selectors import AgreementReport

logger = logging.getLogger(__name__)

DASHBOARD_INLINE_ANSWERS = 5000
"""Up to this many answers a reader's request recomputes out-of-date figures itself (docs/benchmarks.md)."""
DASHBOARD_MIN_INTERVAL_SECONDS = 30
"""A worker recomputes one project's figures at most this often, however fast the labels come."""
DASHBOARD_REQUEST_ABANDONED_SECONDS = 600
"""A requested recomputation that stored nothing for this long was lost (a worker died): readers ask again."""
FIELDS_CACHE_SECONDS = 600
METADATA_SAMPLE = 2000
TOP_VALUES = 12


def _rows(sql: str, params: list[Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


T_DOC = Document._meta.db_table
T_ANN = Annotation._meta.db_table
T_AL = AnnotationLabel._meta.db_table
T_LABEL = Label._meta.db_table
T_BATCH = ImportBatch._meta.db_table


def _chart(chart_id: str, title: str, columns: list[str], rows: list[tuple], svg: Any, note: str = "") -> dict:
    return {"id": chart_id, "title": title, "columns": columns, "rows": rows, "svg": svg, "note": note}


def label_names(project: Project) -> dict[str, str]:
    return dict(Label.objects.filter(taxonomy__project=project).order_by("order", "id").values_list("key", "name"))


def label_counts(project: Project, field: str) -> dict[str, list[tuple]]:
    """Answers per label, overall and by import batch, week and one metadata field, in one pass.

    GROUPING SETS let PostgreSQL join the answers to their documents and labels once for all four
    breakdowns. Counts are answers (an overlapped document counts once per reviewer who gave the label).
    """
    if connection.vendor != "postgresql":
        return _portable.label_counts(project, field)
    # Without a field the fourth breakdown groups by the project itself: one value, ignored below.
    value_sql = "COALESCE(d.metadata ->> %s, '(none)')" if field else "d.project_id::text"
    week_sql = "date_trunc('week', a.created_at)::date"
    rows = _rows(
        f"SELECT d.import_batch_id, {week_sql}, {value_sql}, l.key, COUNT(*), "
        f"GROUPING(d.import_batch_id, {week_sql}, {value_sql}) "
        f"FROM {T_AL} al JOIN {T_ANN} a ON a.id = al.annotation_id JOIN {T_DOC} d ON d.id = a.document_id "
        f"JOIN {T_LABEL} l ON l.id = al.label_id WHERE d.project_id = %s GROUP BY GROUPING SETS ((l.key), "
        f"(d.import_batch_id, l.key), ({week_sql}, l.key), ({value_sql}, l.key))",
        ([field, field] if field else []) + [project.pk] + ([field] if field else []),
    )
    out: dict[str, list[tuple]] = {"labels": [], "batches": [], "weeks": [], "field": []}
    for batch, week, value, key, n, grouping in rows:
        if grouping == 0b111:
            out["labels"].append((key, n))
        elif grouping == 0b011:
            out["batches"].append((batch, key, n))
        elif grouping == 0b101:
            out["weeks"].append((week, key, n))
        elif grouping == 0b110 and field:
            out["field"].append((value, key, n))
    return out


def label_distribution(project: Project, counts: dict[str, list[tuple]]) -> dict:
    names = label_names(project)
    by_key = dict(counts["labels"])
    rows = [(name, by_key[key]) for key, name in names.items() if key in by_key]
    return _chart(
        "labels",
        "Label distribution (answers carrying each label)",
        ["label", "answers"],
        rows,
        charts.hbar(rows, label="Answers per label", colors=[charts.color(i) for i in range(len(rows))]),
    )


def _by_group(
    project: Project, chart_id: str, title: str, rows: list[tuple], group_name: str, *, keep_order: bool = False
) -> dict:
    """Labels split by a document property (rows of (group, label key, answers)), largest groups first."""
    names = label_names(project)
    rows = sorted(rows, key=lambda r: (str(r[0]), list(names).index(r[1]) if r[1] in names else 0))
    totals: dict[str, int] = {}
    for g, _key, n in rows:
        totals[str(g)] = totals.get(str(g), 0) + n
    if keep_order:
        categories = list(dict.fromkeys(str(r[0]) for r in rows))[-TOP_VALUES:]
    else:
        categories = sorted(totals, key=totals.get, reverse=True)[:TOP_VALUES]
    series = [names[k] for k in names if any(r[1] == k for r in rows)]
    values = {(str(g), names.get(k, k)): n for g, k, n in rows}
    table = [(str(g), names.get(k, k), n) for g, k, n in rows]
    return _chart(
        chart_id,
        title,
        [group_name, "label", "answers"],
        table,
        charts.stacked(categories, series, values, label=title),
    )


def labels_by_batch(project: Project, counts: dict[str, list[tuple]]) -> dict:
    batch_ids = {b for b, _k, _n in counts["batches"] if b is not None}
    batches = {
        b.pk: f"{b.file_name} ({b.created_at:%Y-%m-%d})"
        for b in ImportBatch.objects.filter(pk__in=batch_ids).only("file_name", "created_at")
    }
    rows = [(batches.get(b, "added without import"), k, n) for b, k, n in counts["batches"]]
    return _by_group(project, "batches", "Labels by import batch", rows, "import batch")


def labels_by_week(project: Project, counts: dict[str, list[tuple]]) -> dict:
    rows = [(f"{w:%G-W%V}", k, n) for w, k, n in counts["weeks"]]
    return _by_group(project, "weeks", "Labels over time (week of the answer)", rows, "week", keep_order=True)


def metadata_fields(project: Project) -> list[str]:
    """The metadata keys of the project's newest METADATA_SAMPLE documents."""
    if connection.vendor != "postgresql":
        return _portable.metadata_fields(project, METADATA_SAMPLE)
    rows = _rows(
        f"SELECT DISTINCT jsonb_object_keys(metadata) FROM (SELECT metadata FROM {T_DOC} WHERE project_id = %s "
        "AND jsonb_typeof(metadata) = 'object' ORDER BY id DESC LIMIT %s) s",
        [project.pk, METADATA_SAMPLE],
    )
    return sorted(r[0] for r in rows)


def labels_by_field(project: Project, field: str, counts: dict[str, list[tuple]]) -> dict:
    return _by_group(project, "field", f"Labels by {field}", counts["field"], field)


PACE_DAYS = 7


def burn_down(project: Project) -> dict:
    """Documents still to label after each day, and when the queue empties at the last 7 days' pace."""
    per_day = labeled_per_day(project)
    counts = Document.objects.filter(project=project).aggregate(
        total=Count("id"), queued=Count("id", filter=Q(status="queued"))
    )
    remaining = counts["total"]
    points, rows = [], []
    for day, n in per_day:
        remaining -= n
        points.append((f"{day:%Y-%m-%d}", max(remaining, 0)))
        rows.append((f"{day:%Y-%m-%d}", n, max(remaining, 0)))
    today = timezone.localdate()
    # The pace is the reviewers' own: an import that brought labels says nothing about how fast people work.
    # Over the last 7 days, or fewer when reviewers started later, so day one is not divided by seven.
    reviewed = reviewer_labeled_per_day(project)
    first_day = reviewed[0][0] if reviewed else today
    window_start = max(today - timedelta(days=PACE_DAYS - 1), min(first_day, today))
    pace_days = (today - window_start).days + 1
    recent = sum(n for day, n in reviewed if day >= window_start)
    pace = recent / pace_days
    span = "today" if pace_days == 1 else f"last {pace_days} days"
    queued = counts["queued"]
    forecast, note = [], ""
    if queued == 0:
        note = "The queue is empty."
    elif pace > 0:
        days = queued / pace
        end = today + timedelta(days=round(days))
        forecast = [(f"{end:%Y-%m-%d}", 0)]
        note = f"{queued:,} to go at {pace:,.1f} documents a day (reviewers, {span}): empty around {end:%d %b %Y}."
    else:
        note = f"{queued:,} to go; reviewers labeled nothing in the last {PACE_DAYS} days, so there is no pace yet."
    chart = _chart(
        "burndown",
        "Queue burn-down",
        ["day", "documents labeled", "documents left"],
        rows,
        charts.line(points, forecast=forecast, label="Documents left to label"),
        note,
    )
    chart["forecast_date"] = forecast[0][0] if forecast else None
    chart["pace"] = pace
    chart["pace_span"] = span
    return chart


def reviewer_labeled_per_day(project: Project) -> list[tuple[date, int]]:
    """(day, documents a reviewer answered for the first time that day), oldest first; imports left out."""
    if connection.vendor != "postgresql":
        return _portable.labeled_per_day(project, reviewers_only=True)
    return _rows(
        f"SELECT first::date, COUNT(*) FROM (SELECT MIN(a.created_at) AS first FROM {T_ANN} a "
        f"JOIN {T_DOC} d ON d.id = a.document_id WHERE d.project_id = %s AND a.reviewer_id IS NOT NULL "
        "AND a.source <> 'import' GROUP BY a.document_id) f GROUP BY 1 ORDER BY 1",
        [project.pk],
    )


def labeled_per_day(project: Project) -> list[tuple[date, int]]:
    """(day, documents that got their first answer that day), oldest first."""
    if connection.vendor != "postgresql":
        return _portable.labeled_per_day(project)
    return _rows(
        f"SELECT first::date, COUNT(*) FROM (SELECT MIN(a.created_at) AS first FROM {T_ANN} a "
        f"JOIN {T_DOC} d ON d.id = a.document_id WHERE d.project_id = %s GROUP BY a.document_id) f "
        "GROUP BY 1 ORDER BY 1",
        [project.pk],
    )


def reviewer_times(project: Project) -> list[tuple[str, int, float | None, float | None]]:
    """(reviewer, answers, median seconds on screen, total seconds on screen), most answers first."""
    if connection.vendor != "postgresql":
        return _portable.reviewer_times(project)
    return _rows(
        "SELECT u.username, COUNT(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY a.seconds_spent), "
        f"SUM(a.seconds_spent) FROM {T_ANN} a JOIN {T_DOC} d ON d.id = a.document_id "
        "JOIN auth_user u ON u.id = a.reviewer_id WHERE d.project_id = %s GROUP BY u.username ORDER BY 2 DESC",
        [project.pk],
    )


def throughput(project: Project) -> dict:
    table = []
    for name, n, median, total in reviewer_times(project):
        per_hour = round(n / (total / 3600), 1) if total else None
        table.append((name, n, round(median, 1) if median is not None else None, per_hour))
    return _chart(
        "throughput",
        "Reviewer throughput",
        ["reviewer", "documents", "median seconds per document", "documents per hour"],
        table,
        charts.hbar([(r[0], r[3] or 0) for r in table], label="Documents per hour of labeling time"),
        "Documents per hour counts the time each document was on screen, not breaks between documents.",
    )


def agreement_section(project: Project) -> dict:
    """Agreement figures (with bootstrap intervals) and agreement over time."""
    units = quality_selectors.overlapped_units(project)
    report = quality_selectors.project_agreement(project, units=units)
    over_time = quality_selectors.agreement_over_time(units)
    rows = [(r["period"], r["documents"], round(r["observed"], 3)) for r in over_time]
    return {
        "report": report,
        "disputed": sum(1 for u in units if u.disputed and u.final is None),
        "chart": _chart(
            "agreement",
            "Agreement over time (share of agreeing reviewer pairs, week of the last answer)",
            ["week", "overlapped documents", "observed agreement"],
            rows,
            charts.line([(r[0], r[2]) for r in rows], label="Observed agreement per week", y_max=1.0, percent=True),
        ),
    }


def model_confusion(project: Project) -> dict:
    """Where the active model and the reviewers' final labels disagree most, on the evaluation set."""
    version = active_model_version(project)
    confusion = (version.metrics or {}).get("confusion") if version else None
    names = label_names(project)
    rows: list[tuple] = []
    if confusion and "matrix" in confusion:
        labels = confusion["labels"]
        for i, row in enumerate(confusion["matrix"]):
            for j, n in enumerate(row):
                if i != j and n:
                    rows.append((names.get(labels[i], labels[i]), names.get(labels[j], labels[j]), n))
    elif confusion:
        for key, cells in confusion.items():
            if isinstance(cells, dict) and (cells.get("fp") or cells.get("fn")):
                rows.append((names.get(key, key), "missed by the model", cells.get("fn", 0)))
                rows.append(("not " + names.get(key, key), "given by the model", cells.get("fp", 0)))
    rows.sort(key=lambda r: r[2], reverse=True)
    rows = rows[:15]
    note = (
        f"Model v{version.number} on its {version.eval_label_count} evaluation documents."
        if version
        else "No active model yet."
    )
    return _chart(
        "confusion",
        "Where the model and the reviewers disagree",
        ["reviewers said", "model said", "documents"],
        rows,
        charts.hbar([(f"{a} → {b}", n) for a, b, n in rows], label="Disagreements between reviewers and model"),
        note,
    )


def model_versions(project: Project) -> dict:
    versions = list(
        ModelVersion.objects.filter(project=project, status__in=["ready", "active", "retired"])
        .exclude(metrics={})
        .order_by("number")
        .values("number", "kind", "train_label_count", "metrics", "created_at")
    )
    rows = [
        (
            f"v{v['number']}",
            v["kind"],
            v["train_label_count"],
            round(v["metrics"].get("macro_f1", 0.0), 3),
            round(v["metrics"].get("micro_f1", 0.0), 3),
        )
        for v in versions
    ]
    return _chart(
        "models",
        "Model quality across versions (macro F1 on the evaluation set)",
        ["version", "kind", "training labels", "macro F1", "micro F1"],
        rows,
        charts.line([(r[0], r[3]) for r in rows], label="Macro F1 per model version", y_max=1.0, percent=True),
    )


def dashboard_data(project: Project, *, metadata_field: str = "") -> dict:
    """The dashboard's figures for a reader, without computing them in the request unless the project is small.

    Figures are stored per project and breakdown field with the newest audit event they were computed from
    (every label, decision, gold answer, import, taxonomy change and model promotion writes one). A reader gets
    the stored figures at once; when they are out of date, a worker is asked to recompute them (once, see
    `_refresh_request`) and the page says "as of HH:MM, updating". A project with up to DASHBOARD_INLINE_ANSWERS
    answers is recomputed in the request instead (well under the page's time budget). A large project with
    nothing stored yet gets `state` "computing" and no figures: the page says so and reloads itself.
    """
    fields = cache.get_or_set(f"quality:fields:{project.pk}", lambda: metadata_fields(project), FIELDS_CACHE_SECONDS)
    field = metadata_field if metadata_field in fields else ("product" if "product" in fields else "")
    field = field if len(field) <= DashboardFigures._meta.get_field("field").max_length else ""
    version = dashboard_version(project)
    stored = DashboardFigures.objects.filter(project=project, field=field).first()
    context = {"fields": fields, "field": field, "today": date.today()}
    if stored is not None and stored.figures is not None and stored.version == version:
        return {**figures_loaded(stored.figures), **context, "state": "current", "computed_at": stored.computed_at}
    if _is_small(project):
        computed = dashboard_refresh(project_id=project.pk, field=field, version=version)
        stored = computed or DashboardFigures.objects.get(project=project, field=field)
        return {**figures_loaded(stored.figures), **context, "state": "current", "computed_at": stored.computed_at}
    _refresh_request(project, field, stored)
    if stored is None or stored.figures is None:
        return {**context, "state": "computing", "charts": [], "disputed": None, "computed_at": None}
    return {**figures_loaded(stored.figures), **context, "state": "updating", "computed_at": stored.computed_at}


def dashboard_version(project: Project) -> str:
    """What the figures depend on: the project's newest audit event, and whether it is multi-label."""
    last_event = AuditEvent.objects.filter(project=project).order_by("-id").values_list("id", flat=True).first()
    return f"{last_event}:{int(project.multi_label)}"


def _is_small(project: Project) -> bool:
    """Whether the project has at most DASHBOARD_INLINE_ANSWERS answers; counts no further than that, so the
    question costs a large project's reader the same few milliseconds as a small one's."""
    answers = Annotation.objects.filter(document__project=project).values("pk")[: DASHBOARD_INLINE_ANSWERS + 1]
    return answers.count() <= DASHBOARD_INLINE_ANSWERS


def dashboard_refresh(*, project_id: int, field: str = "", version: str | None = None) -> DashboardFigures | None:
    """Compute and store a project's figures unless the stored ones are current (what the worker runs).

    Returns the stored row when it computed, None when there was nothing to do (current, or no such project).
    The version is read before computing: a change made meanwhile leaves the figures out of date, so the
    next reader asks again.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    version = version or dashboard_version(project)
    stored = DashboardFigures.objects.filter(project=project, field=field).first()
    if stored is not None and stored.figures is not None and stored.version == version:
        DashboardFigures.objects.filter(pk=stored.pk).update(refresh_requested_at=None)
        return None
    started = time.perf_counter()
    figures = figures_dumped(_dashboard_compute(project, field))
    stored, _ = DashboardFigures.objects.update_or_create(
        project=project,
        field=field,
        defaults={
            "version": version,
            "figures": figures,
            "computed_at": timezone.now(),
            "seconds": time.perf_counter() - started,
            "refresh_requested_at": None,
        },
    )
    return stored


def _refresh_request(project: Project, field: str, stored: DashboardFigures | None) -> bool:
    """Ask a worker to recompute, unless a request is already pending (and not abandoned).

    The pending mark lives in the figures' row, so every web process sees it: a burst of readers asks once.
    Figures computed less than DASHBOARD_MIN_INTERVAL ago are recomputed when that interval ends, so a busy
    project costs a worker one computation per interval, not one per label. A broker outage is logged and the
    mark cleared: the next reader asks again.
    """
    now = timezone.now()
    if stored is None:
        stored, _ = DashboardFigures.objects.get_or_create(project=project, field=field)
    abandoned = now - timedelta(seconds=DASHBOARD_REQUEST_ABANDONED_SECONDS)
    not_pending = Q(refresh_requested_at__isnull=True) | Q(refresh_requested_at__lte=abandoned)
    if not DashboardFigures.objects.filter(not_pending, pk=stored.pk).update(refresh_requested_at=now):
        return False
    countdown = 0.0
    if stored.computed_at is not None:
        countdown = max(0.0, DASHBOARD_MIN_INTERVAL_SECONDS - (now - stored.computed_at).total_seconds())
    try:
        from quality.tasks import refresh_dashboard  # the task runs this module: enqueue from here only

        refresh_dashboard.apply_async((project.pk, field), countdown=countdown)
    except Exception:
        DashboardFigures.objects.filter(pk=stored.pk).update(refresh_requested_at=None)
        logger.exception("Could not ask a worker to recompute the dashboard of project %s", project.pk)
        return False
    return True


def dashboards_refresh_stale() -> int:
    """Ask for a recomputation of every stored dashboard a change has outdated (what the scheduler runs each
    minute), so the first reader after a change usually finds current figures. Returns how many were asked."""
    asked = 0
    for stored in DashboardFigures.objects.filter(figures__isnull=False).select_related("project"):
        if stored.version != dashboard_version(stored.project):
            asked += _refresh_request(stored.project, stored.field, stored)
    return asked


# --- Stored form: JSON, turned back into what the template reads ---------------------------------------------


def figures_dumped(data: dict) -> dict:
    """The computed figures as JSON values (the agreement report and its estimates as plain dicts)."""
    text = json.dumps({**data, "agreement": asdict(data["agreement"])}, default=_json_value)
    return json.loads(text, parse_constant=lambda _name: None)  # NaN and infinities: PostgreSQL's JSON has none


def _json_value(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"Cannot store {type(value).__name__} in the dashboard's figures")


def figures_loaded(figures: dict) -> dict:
    """Stored figures as the template reads them: estimates as objects, the charts' SVG as markup."""
    report = dict(figures["agreement"])
    for name in ("observed", "alpha"):
        report[name] = Estimate(**report[name])
    report["pairs"] = [{**pair, "kappa": Estimate(**pair["kappa"])} for pair in report["pairs"]]
    report["per_label"] = [
        {**row, **{k: Estimate(**row[k]) for k in ("observed", "alpha", "kappa") if k in row}}
        for row in report["per_label"]
    ]
    report["consensus"] = [{**row, "estimate": Estimate(**row["estimate"])} for row in report["consensus"]]
    # The SVG was built from escaped text when it was computed (quality/charts.py).
    charts_list = [{**chart, "svg": mark_safe(chart["svg"])} for chart in figures["charts"]]  # noqa: S308
    return {**figures, "agreement": AgreementReport(**report), "charts": charts_list}


def _dashboard_compute(project: Project, field: str) -> dict:
    counts = label_counts(project, field)
    charts_list = [
        label_distribution(project, counts),
        labels_by_batch(project, counts),
        labels_by_week(project, counts),
    ]
    if field:
        charts_list.append(labels_by_field(project, field, counts))
    burn = burn_down(project)
    agreement = agreement_section(project)
    charts_list += [burn, throughput(project), agreement["chart"], model_confusion(project), model_versions(project)]
    totals = Document.objects.filter(project=project).aggregate(
        total=Count("id"), labeled=Count("id", filter=Q(status="labeled"))
    )
    return {
        "charts": charts_list,
        "agreement": agreement["report"],
        "disputed": agreement["disputed"],
        "burn": burn,
        "totals": totals,
    }
