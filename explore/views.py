"""The Explore page: search by words, meaning and filters; label many at once; review these next; undo a batch."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotation import permissions
from annotation.exceptions import DocketError
from annotation.models import AuditEvent, BulkBatch, Project
from annotation.services.bulk import (
    MAX_BULK_DOCUMENTS,
    bulk_batch_undo,
    bulk_label_apply,
    bulk_label_preview,
    queue_boost_add,
)
from explore.forms import BulkLabelForm, ExploreForm, QueueBoostForm, SelectionForm
from explore.search import ExploreQuery, SearchInvalid, batch_agreement, matching_ids, metadata_keys, search

# What the preview lists by name, in this order, and how it says each.
PREVIEW_GROUPS = [
    ("new", "get a new answer"),
    ("changed", "have your earlier answer changed"),
    ("unchanged", "already have these labels from you: unchanged"),
    ("leased", "are being read by another reviewer now: left alone"),
    ("gold", "are gold documents: never touched"),
    ("held", "are held for legal review or closed: left alone"),
]


# The search form's filters: the page opens them when one is in use.
FILTER_FIELDS = (
    "meta_key",
    "meta_value",
    "batch",
    "labeled",
    "final",
    "predicted",
    "pmin",
    "pmax",
    "reviewer",
    "flagged",
    "gold",
)


def _context(request: HttpRequest, project: Project, **extra) -> dict:
    role = permissions.role_in(request.user, project)
    return {
        "project": project,
        "role": role,
        "may_bulk": permissions.can(request.user, project, "bulk_label"),
        **extra,
    }


@login_required
@require_GET
def explore_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id)
    sees_answers = permissions.can(request.user, project, "view_answers")
    form = ExploreForm(request.GET or None, project=project, sees_answers=sees_answers)
    page, error = None, ""
    if form.is_bound and form.is_valid():
        after = request.GET.get("after", "")
        offset = request.GET.get("offset", "")
        try:
            page = search(
                project,
                form.query(),
                user=request.user,
                sees_answers=sees_answers,
                after=int(after) if after.isdigit() else None,
                offset=int(offset) if offset.isdigit() else 0,
            )
        except SearchInvalid as problem:
            error = str(problem)
    elif not form.is_bound:  # the newest documents, before any search
        page = search(project, ExploreQuery(), user=request.user, sees_answers=sees_answers)
    query_string = _without_paging(request.GET)
    context = _context(
        request,
        project,
        form=form,
        page=page,
        error=error,
        query_string=query_string,
        without_like=_without_paging(request.GET, "like"),
        filters_used=any(request.GET.get(name) for name in FILTER_FIELDS),
        metadata_keys=metadata_keys(project),
        bulk_form=BulkLabelForm(project=project),
        boost_form=QueueBoostForm(project=project),
        batches=BulkBatch.objects.filter(project=project).select_related("actor", "undone_by")[:5],
        max_bulk=MAX_BULK_DOCUMENTS,
    )
    return render(request, "explore/explore.html", context)


def _without_paging(params: QueryDict, *also: str) -> str:
    kept = params.copy()
    for name in ("after", "offset", *also):
        kept.pop(name, None)
    return kept.urlencode()


def _selected_ids(request: HttpRequest, project: Project, form: SelectionForm) -> list[int]:
    """The ids the apply step carries, else every match of the search ("all N matching"), else the ticked rows."""
    if form.cleaned_data["documents"]:
        return form.cleaned_data["documents"]
    if form.cleaned_data["all_matching"]:
        sees_answers = permissions.can(request.user, project, "view_answers")
        search_form = ExploreForm(QueryDict(form.cleaned_data["query"]), project=project, sees_answers=sees_answers)
        if not search_form.is_valid():
            raise SearchInvalid("The search is no longer valid; search again.")
        return matching_ids(
            project, search_form.query(), user=request.user, sees_answers=sees_answers, limit=MAX_BULK_DOCUMENTS
        )
    return form.ticked()


def _back_to_search(project: Project, form: SelectionForm) -> HttpResponse:
    query = form.cleaned_data.get("query", "") if hasattr(form, "cleaned_data") else ""
    return redirect(f"{reverse('explore:explore', args=[project.pk])}?{query}")


@login_required
@require_POST
def bulk_label(request: HttpRequest, project_id: int) -> HttpResponse:
    """Step one shows what would change (`step=preview`); step two applies exactly what was previewed."""
    project = permissions.access_project_by_id(request.user, project_id, action="bulk_label")
    form = BulkLabelForm(request.POST, project=project)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, errors[0])
        return _back_to_search(project, form)
    try:
        ids = _selected_ids(request, project, form)
        if not ids:
            raise SearchInvalid("Tick the documents to label, or choose all matching.")
        if request.POST.get("step") == "apply":
            batch = bulk_label_apply(
                actor=request.user,
                project=project,
                document_ids=ids,
                label_keys=form.cleaned_data["labels"],
                query=dict(QueryDict(form.cleaned_data["query"]).lists()),
            )
            messages.success(
                request,
                f"Labeled {batch.created_count + batch.changed_count} documents as one batch "
                f"({batch.created_count} new answers, {batch.changed_count} changed).",
            )
            return redirect("explore:batch", project.pk, batch.pk)
        preview = bulk_label_preview(
            actor=request.user, project=project, document_ids=ids, label_keys=form.cleaned_data["labels"]
        )
    except (SearchInvalid, DocketError) as problem:
        messages.error(request, str(problem))
        return _back_to_search(project, form)
    groups = [(name, words, len(getattr(preview, name))) for name, words in PREVIEW_GROUPS]
    context = _context(
        request,
        project,
        preview=preview,
        groups=groups,
        documents=",".join(str(pk) for pk in ids),
        query=form.cleaned_data["query"],
        labels=[name for key, name in form.fields["labels"].choices if key in form.cleaned_data["labels"]],
        label_keys=form.cleaned_data["labels"],
    )
    return render(request, "explore/preview.html", context)


@login_required
@require_POST
def review_next(request: HttpRequest, project_id: int) -> HttpResponse:
    """Put the selection's queued documents at the front of the queue, for one reviewer or for everyone."""
    project = permissions.access_project_by_id(request.user, project_id, action="bulk_label")
    form = QueueBoostForm(request.POST, project=project)
    if not form.is_valid():
        messages.error(request, "Choose a reviewer from the list, or everyone.")
        return _back_to_search(project, form)
    try:
        ids = _selected_ids(request, project, form)
        if not ids:
            raise SearchInvalid("Tick the documents to review next, or choose all matching.")
        reviewer = form.reviewer_user()
        count = queue_boost_add(actor=request.user, project=project, document_ids=ids, reviewer=reviewer)
    except (SearchInvalid, DocketError) as problem:
        messages.error(request, str(problem))
        return _back_to_search(project, form)
    who = reviewer.get_username() if reviewer else "every reviewer"
    messages.success(
        request,
        f"{count} of {len(ids)} selected documents are next in the queue for {who}"
        + ("." if count == len(ids) else " (the others are not waiting in the queue)."),
    )
    return _back_to_search(project, form)


def _batch(project: Project, batch_id: str) -> BulkBatch:
    batch = BulkBatch.objects.filter(project=project, pk=batch_id).select_related("actor", "undone_by").first()
    if batch is None:
        raise Http404("No such batch in this project.")
    return batch


@login_required
@require_GET
def batch_detail(request: HttpRequest, project_id: int, batch_id: str) -> HttpResponse:
    """A batch and its audit events: the apply, one per document, and the undo when there is one."""
    project = permissions.access_project_by_id(request.user, project_id, action="bulk_label")
    batch = _batch(project, batch_id)
    events = AuditEvent.objects.filter(
        project=project,
        action__in=["bulk.apply", "bulk.undo", "annotation.bulk", "annotation.bulk_undo"],
        after__batch=str(batch.pk),
    ).order_by("created_at", "id")
    rows = [
        {
            "event": event,
            "document": (event.after or {}).get("document") or (event.before or {}).get("document") or "",
            "labels": (event.after or {}).get("labels", []),
        }
        for event in events[:1000]
    ]
    agreement = batch_agreement(batch)
    context = _context(request, project, batch=batch, rows=rows, agreement=agreement)
    return render(request, "explore/batch.html", context)


@login_required
@require_POST
def batch_undo(request: HttpRequest, project_id: int, batch_id: str) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="bulk_label")
    batch = _batch(project, batch_id)
    try:
        result = bulk_batch_undo(actor=request.user, batch=batch)
    except DocketError as problem:
        messages.error(request, str(problem))
        return redirect("explore:batch", project.pk, batch.pk)
    kept = f"; {len(result.kept)} answers revised since were kept" if result.kept else ""
    messages.success(request, f"Undid the batch: {result.removed} answers removed, {result.restored} restored{kept}.")
    return redirect("explore:batch", project.pk, batch.pk)
