"""The insights dashboard's figures, for the privacy office rather than the annotators.

Each figure is one aggregate query in PostgreSQL (no rows are pulled into Python to be counted), so the page
stays fast at 100,000 documents. Agreement needs the overlapped documents' answers and bootstrap intervals;
it is cached until a label or a decision changes. Every chart is returned with its table rows, which the
page shows and offers as CSV.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max, Q
from django.utils import timezone

from annotation import quality_charts as charts
from annotation import quality_selectors
from annotation.models import Adjudication, Annotation, AnnotationLabel, Document, ImportBatch, Label, Project

AGREEMENT_CACHE_SECONDS = 24 * 3600
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


def label_distribution(project: Project) -> dict:
    rows = _rows(
        f"SELECT l.key, COUNT(DISTINCT a.document_id) FROM {T_AL} al "
        f"JOIN {T_ANN} a ON a.id = al.annotation_id JOIN {T_DOC} d ON d.id = a.document_id "
        f"JOIN {T_LABEL} l ON l.id = al.label_id WHERE d.project_id = %s GROUP BY l.key, l.order "
        "ORDER BY l.order",
        [project.pk],
    )
    names = label_names(project)
    rows = [(names.get(k, k), n) for k, n in rows]
    return _chart(
        "labels",
        "Label distribution (documents with an answer carrying each label)",
        ["label", "documents"],
        rows,
        charts.hbar(rows, label="Documents per label", colors=[charts.color(i) for i in range(len(rows))]),
    )


def _by_group(project: Project, chart_id: str, title: str, group_sql: str, group_name: str, params: list) -> dict:
    """Labels split by a document property: import batch, annotation week or a metadata field."""
    rows = _rows(
        f"SELECT {group_sql} AS g, l.key, COUNT(DISTINCT a.document_id) FROM {T_AL} al "
        f"JOIN {T_ANN} a ON a.id = al.annotation_id JOIN {T_DOC} d ON d.id = a.document_id "
        f"JOIN {T_LABEL} l ON l.id = al.label_id LEFT JOIN {T_BATCH} b ON b.id = d.import_batch_id "
        "WHERE d.project_id = %s GROUP BY g, l.key ORDER BY g",
        params + [project.pk],
    )
    names = label_names(project)
    totals: dict[str, int] = {}
    for g, _key, n in rows:
        totals[str(g)] = totals.get(str(g), 0) + n
    if chart_id != "weeks":  # keep the largest groups; weeks keep their order
        keep = set(sorted(totals, key=totals.get, reverse=True)[:TOP_VALUES])
        categories = [g for g in dict.fromkeys(str(r[0]) for r in rows) if g in keep]
    else:
        categories = list(dict.fromkeys(str(r[0]) for r in rows))[-TOP_VALUES:]
    series = [names[k] for k in names if any(r[1] == k for r in rows)]
    values = {(str(g), names.get(k, k)): n for g, k, n in rows}
    table = [(str(g), names.get(k, k), n) for g, k, n in rows]
    return _chart(
        chart_id,
        title,
        [group_name, "label", "documents"],
        table,
        charts.stacked(categories, series, values, label=title),
    )


def labels_by_batch(project: Project) -> dict:
    group = "COALESCE(b.file_name || ' (' || to_char(b.created_at, 'YYYY-MM-DD') || ')', 'added without import')"
    return _by_group(project, "batches", "Labels by import batch", group, "import batch", [])


def labels_by_week(project: Project) -> dict:
    return _by_group(
        project, "weeks", "Labels over time (week of the answer)", "to_char(a.created_at, 'IYYY-\"W\"IW')", "week", []
    )


def metadata_fields(project: Project) -> list[str]:
    rows = _rows(
        f"SELECT DISTINCT jsonb_object_keys(metadata) FROM (SELECT metadata FROM {T_DOC} WHERE project_id = %s "
        "AND jsonb_typeof(metadata) = 'object' ORDER BY id DESC LIMIT %s) s",
        [project.pk, METADATA_SAMPLE],
    )
    return sorted(r[0] for r in rows)


def labels_by_field(project: Project, field: str) -> dict:
    return _by_group(
        project,
        "field",
        f"Labels by {field}",
        "COALESCE(d.metadata ->> %s, '(none)')",
        field,
        [field],
    )


def burn_down(project: Project) -> dict:
    """Documents still to label after each day, and when the queue empties at the last 7 days' pace."""
    per_day = _rows(
        f"SELECT first::date, COUNT(*) FROM (SELECT MIN(a.created_at) AS first FROM {T_ANN} a "
        f"JOIN {T_DOC} d ON d.id = a.document_id WHERE d.project_id = %s GROUP BY a.document_id) f "
        "GROUP BY 1 ORDER BY 1",
        [project.pk],
    )
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
    recent = sum(n for day, n in per_day if day > today - timedelta(days=7))
    pace = recent / 7
    queued = counts["queued"]
    forecast, note = [], ""
    if queued == 0:
        note = "The queue is empty."
    elif pace > 0:
        days = queued / pace
        end = today + timedelta(days=round(days))
        forecast = [(f"{end:%Y-%m-%d}", 0)]
        note = f"{queued:,} to go at {pace:,.1f} documents a day (last 7 days): empty around {end:%d %b %Y}."
    else:
        note = f"{queued:,} to go; nothing was labeled in the last 7 days, so there is no pace to forecast from."
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
    return chart


def throughput(project: Project) -> dict:
    rows = _rows(
        "SELECT u.username, COUNT(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY a.seconds_spent), "
        f"SUM(a.seconds_spent) FROM {T_ANN} a JOIN {T_DOC} d ON d.id = a.document_id "
        "JOIN auth_user u ON u.id = a.reviewer_id WHERE d.project_id = %s GROUP BY u.username ORDER BY 2 DESC",
        [project.pk],
    )
    table = []
    for name, n, median, total in rows:
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
    """Agreement figures and agreement over time, cached until an answer or a decision changes."""
    stamp = Annotation.objects.filter(document__project=project).aggregate(n=Count("id"), at=Max("updated_at"))
    decided = Adjudication.objects.filter(project=project).aggregate(n=Count("id"))["n"]
    changed = stamp["at"].timestamp() if stamp["at"] else 0
    key = f"quality:agreement:{project.pk}:{stamp['n']}:{changed}:{decided}:{int(project.multi_label)}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    units = quality_selectors.overlapped_units(project)
    report = quality_selectors.project_agreement(project, units=units)
    over_time = quality_selectors.agreement_over_time(units)
    rows = [(r["period"], r["documents"], round(r["observed"], 3)) for r in over_time]
    section = {
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
    cache.set(key, section, AGREEMENT_CACHE_SECONDS)
    return section


def model_confusion(project: Project) -> dict:
    """Where the active model and the reviewers' final labels disagree most, on the evaluation set."""
    from learning.selectors import active_model_version

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
    from learning.models import ModelVersion

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
    fields = metadata_fields(project)
    field = metadata_field if metadata_field in fields else ("product" if "product" in fields else "")
    charts_list = [label_distribution(project), labels_by_batch(project), labels_by_week(project)]
    if field:
        charts_list.append(labels_by_field(project, field))
    burn = burn_down(project)
    agreement = agreement_section(project)
    charts_list += [burn, throughput(project), agreement["chart"], model_confusion(project), model_versions(project)]
    totals = Document.objects.filter(project=project).aggregate(
        total=Count("id"),
        labeled=Count("id", filter=Q(status="labeled")),
    )
    return {
        "charts": charts_list,
        "fields": fields,
        "field": field,
        "agreement": agreement["report"],
        "disputed": agreement["disputed"],
        "burn": burn,
        "totals": totals,
        "today": date.today(),
    }
