"""The models page: versions and their metrics, the learning curve, live training progress, admin switches."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation import permissions
from learning import selectors, services
from learning.exceptions import ModelSwitchRefused
from learning.models import ModelVersion

MANAGE = "manage_models"


@login_required
@require_GET
def models_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id)
    versions = list(selectors.model_versions(project))
    active = next((v for v in versions if v.status == ModelVersion.Status.ACTIVE), None)
    run = selectors.current_training_run(project)
    return render(
        request,
        "learning/models.html",
        {
            "project": project,
            "role": permissions.role_in(request.user, project),
            "can_manage": permissions.can(request.user, project, MANAGE),
            "versions": versions,
            "active": active,
            "can_roll_back": active is not None and selectors.rollback_candidates(project, active).exists(),
            "run": selectors.training_run_status(run),
            "runs": selectors.training_runs(project, limit=10),
            "has_curve": bool(selectors.learning_curve(project)),
        },
    )


@login_required
@require_GET
def version_detail(request: HttpRequest, project_id: int, number: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id)
    version = selectors.model_version_by_number(project, number)
    if version is None:
        raise Http404("No such model version in this project.")
    metrics = version.metrics or {}
    per_label = [
        {"key": key, "name": _label_name(version, key), **values}
        for key, values in (metrics.get("per_label") or {}).items()
    ]
    confusion = metrics.get("confusion") or {}
    return render(
        request,
        "learning/version_detail.html",
        {
            "project": project,
            "role": permissions.role_in(request.user, project),
            "version": version,
            "can_manage": permissions.can(request.user, project, MANAGE),
            "per_label": per_label,
            "matrix": _matrix_rows(version, confusion) if "matrix" in confusion else None,
            "label_tables": _label_tables(version, confusion) if confusion and "matrix" not in confusion else None,
            "comparison": metrics.get("comparison") or {},
            "runs": list(version.training_runs.order_by("-created_at")),
        },
    )


@login_required
@require_GET
def training_status(request: HttpRequest, project_id: int) -> JsonResponse:
    """Polled by the models page every few seconds; also notices a run whose worker died."""
    project = permissions.access_project_by_id(request.user, project_id)
    services.training_runs_fail_stale(project_id=project.pk)
    active = selectors.active_model_version(project)
    return JsonResponse(
        {
            "run": selectors.training_run_status(selectors.current_training_run(project)),
            "active_version": active.number if active else None,
        }
    )


@login_required
@require_GET
def learning_curve_svg(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id)
    svg = learning_curve_drawing(selectors.learning_curve(project))
    return HttpResponse(svg, content_type="image/svg+xml")


@login_required
@require_POST
def version_promote(request: HttpRequest, project_id: int, number: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action=MANAGE)
    version = selectors.model_version_by_number(project, number)
    if version is None:
        raise Http404("No such model version in this project.")
    try:
        services.model_version_promote(version=version, actor=request.user)
    except ModelSwitchRefused as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Version {number} now serves; the queue is being rescored with it.")
    return redirect("learning:models", project_id=project.pk)


@login_required
@require_POST
def version_rollback(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action=MANAGE)
    try:
        version = services.model_version_rollback(project=project, actor=request.user)
    except ModelSwitchRefused as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Rolled back: version {version.number} serves again.")
    return redirect("learning:models", project_id=project.pk)


@login_required
@require_POST
def train_now(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action=MANAGE)
    run = services.training_request_now(project=project, actor=request.user)
    if run.status == run.Status.QUEUED and run.trigger == run.Trigger.ADMIN:
        messages.success(request, "Training requested: the body will be fine-tuned by a worker. Progress shows below.")
    return redirect("learning:models", project_id=project.pk)


@login_required
@require_POST
def rescore_now(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action=MANAGE)
    services.pool_rescore_request(project=project)
    messages.success(request, "A worker is rescoring the review queue.")
    return redirect("learning:models", project_id=project.pk)


# --- Presentation helpers ------------------------------------------------------------------------------------


def _label_name(version: ModelVersion, key: str) -> str:
    return next((label["name"] for label in version.labels if label.get("key") == key), key)


def _matrix_rows(version: ModelVersion, confusion: dict) -> dict:
    keys = confusion.get("labels") or version.label_keys
    names = [_label_name(version, key) for key in keys]
    rows = [{"name": name, "cells": cells} for name, cells in zip(names, confusion["matrix"], strict=False)]
    return {"names": names, "rows": rows}


def _label_tables(version: ModelVersion, confusion: dict) -> list[dict]:
    return [{"name": _label_name(version, key), **table} for key, table in confusion.items()]


def learning_curve_drawing(points: list[dict], *, width: int = 960, height: int = 300) -> str:
    """An SVG line chart of evaluation macro-F1 (0..1) against the number of training labels per version."""
    left, right, top, bottom = 52, 16, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    max_x = max([p["train_label_count"] for p in points] + [10])
    max_x = _nice_ceiling(max_x)

    def x(value: float) -> float:
        return left + plot_w * value / max_x

    def y(value: float) -> float:
        return top + plot_h * (1 - value)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="system-ui, sans-serif" font-size="12" role="img" '
        'aria-label="Learning curve: evaluation macro-F1 against training labels">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e3e8eb"/>'
            f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end" fill="#5b6b75">{tick:.2f}</text>'
        )
    for i in range(5):
        value = max_x * i / 4
        parts.append(
            f'<text x="{x(value):.1f}" y="{height - bottom + 18}" text-anchor="middle" fill="#5b6b75">{value:g}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="#1d2a33">'
        "training labels</text>"
        f'<text x="14" y="{top + plot_h / 2:.1f}" text-anchor="middle" fill="#1d2a33" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">macro-F1 (evaluation set)</text>'
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#9aa7ae"/>'
        f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#9aa7ae"/>'
    )
    if not points:
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle" fill="#5b6b75">'
            "No evaluated model yet</text></svg>"
        )
        return "".join(parts)
    line = " ".join(f"{x(p['train_label_count']):.1f},{y(p['macro_f1']):.1f}" for p in points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1f6f8b" stroke-width="2"/>')
    previous: tuple[float, float] | None = None
    for p in points:
        active = p["status"] == ModelVersion.Status.ACTIVE
        fill = "#2e7d4f" if active else ("#a4492b" if p["kind"] == ModelVersion.Kind.SLOW else "#1f6f8b")
        radius = 6 if active else 4
        cx, cy = x(p["train_label_count"]), y(p["macro_f1"])
        # A version close to the previous one gets its name below the point, so the two names stay apart.
        crowded = previous is not None and abs(cx - previous[0]) < 24 and abs(cy - previous[1]) < 24
        label_y = cy + 18 if crowded else cy - 9
        previous = (cx, cy)
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}" fill="{fill}" stroke="#fff" stroke-width="1.5">'
            f"<title>v{p['number']} ({p['kind']}): macro-F1 {p['macro_f1']:.3f} with {p['train_label_count']} "
            f"training labels, {p['eval_label_count']} evaluation labels</title></circle>"
            f'<text x="{cx:.1f}" y="{label_y:.1f}" text-anchor="middle" fill="#5b6b75" font-size="10">'
            f"v{p['number']}</text>"
        )
    legend_y = top + 4
    for i, (text, color) in enumerate((("fast (head)", "#1f6f8b"), ("slow (body)", "#a4492b"), ("active", "#2e7d4f"))):
        lx = width - right - 300 + i * 100
        parts.append(
            f'<circle cx="{lx}" cy="{legend_y + 6}" r="5" fill="{color}"/>'
            f'<text x="{lx + 9}" y="{legend_y + 10}" fill="#1d2a33">{text}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above value, so axis ticks are round numbers."""
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude
