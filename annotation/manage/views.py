"""Project admin pages: the taxonomy editor and its history, people and roles, document import and export,
the audit log, new projects.

Every view reaches its project through `permissions.access_project_by_id` with the action it needs, so a
reviewer gets 403, a non-member 404 and an anonymous visitor the login page, exactly as in the API.
"""

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST
from markdown_it import MarkdownIt

from annotation import permissions
from annotation.exceptions import (
    AlreadyMember,
    DocketError,
    ImportRejected,
    LabelInUse,
    LabelsChanged,
    LastAdmin,
    NotAllowed,
    TaxonomyInvalid,
)
from annotation.manage.forms import (
    AuditFilterForm,
    ImportUploadForm,
    LabelForm,
    MemberAddForm,
    MergeForm,
    ProjectCreateForm,
    ProjectSettingsForm,
    RoleForm,
    SplitPartFormSet,
    TaxonomyImportForm,
)
from annotation.models import AuditEvent, Document, ImportBatch, Label, Membership, Project, TaxonomyVersion
from annotation.services import audit, exports, imports, members, taxonomy
from annotation.services.exports import EXPORT_FORMATS
from annotation.services.imports import ImportOptions
from annotation.services.projects import project_create, project_settings_update

# Guidelines are Markdown written by admins; raw HTML in them is shown as text, never run.
MARKDOWN = MarkdownIt("commonmark", {"html": False})
AUDIT_PAGE_SIZE = 50


def markdown(text: str) -> str:
    return mark_safe(MARKDOWN.render(text or ""))  # noqa: S308 - markdown-it escapes HTML when html=False


def _context(request: HttpRequest, project: Project, tab: str, **extra: Any) -> dict[str, Any]:
    return {
        "project": project,
        "role": permissions.role_in(request.user, project),
        "tab": tab,
        "taxonomy_version": taxonomy.taxonomy_for(project).version,
        **extra,
    }


def _labels(project: Project) -> list[Label]:
    return list(Label.objects.filter(taxonomy__project=project).select_related("parent").order_by("order", "id"))


def _label(project: Project, key: str) -> Label:
    label = Label.objects.filter(taxonomy__project=project, key=key).select_related("parent", "taxonomy").first()
    if label is None:
        raise Http404("No such label in this project.")
    return label


def _error(request: HttpRequest, error: Exception) -> None:
    if isinstance(error, ValidationError):
        messages.error(request, " ".join(error.messages))
    else:
        messages.error(request, str(error))


# --- Overview ---------------------------------------------------------------------------------------------------


@login_required
def manage_index(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    labels = _labels(project)
    context = _context(
        request,
        project,
        "overview",
        label_count=sum(not label.deprecated for label in labels),
        deprecated_count=sum(label.deprecated for label in labels),
        member_count=Membership.objects.filter(project=project).count(),
        document_count=Document.objects.filter(project=project).count(),
        rereview_count=Document.objects.filter(project=project, status="queued").exclude(rereview_reason="").count(),
        model=taxonomy.model_status(project),
        recent=AuditEvent.objects.filter(project=project).order_by("-created_at", "-id")[:8],
    )
    return render(request, "manage/index.html", context)


@login_required
def project_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    """Name, description, lease time and the learning loop's settings; every change is audited."""
    project = permissions.access_project_by_id(request.user, project_id, action="manage_settings")
    # The form validates a copy: a rejected change must not show up on the page's own project.
    form = ProjectSettingsForm(request.POST or None, instance=Project.objects.get(pk=project.pk))
    if request.method == "POST" and form.is_valid():
        try:
            project = project_settings_update(
                actor=request.user, project=project, **{f: form.cleaned_data[f] for f in form.Meta.fields}
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, "Settings saved.")
            return redirect("manage:settings", project.pk)
    return render(request, "manage/settings.html", _context(request, project, "settings", form=form))


# --- Taxonomy ---------------------------------------------------------------------------------------------------


@login_required
def taxonomy_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    labels = taxonomy.tree_order(_labels(project))
    depths = taxonomy.label_depths(labels)
    usage = taxonomy.label_usage(project)
    siblings: dict[int | None, list[int]] = {}
    for label in labels:
        siblings.setdefault(label.parent_id, []).append(label.pk)
    rows = [
        {
            "label": label,
            "depth": depths[label.pk],
            "indent": depths[label.pk] * 1.5,
            "usage": usage.get(label.pk, {"annotations": 0, "documents": 0}),
            "first": siblings[label.parent_id][0] == label.pk,
            "last": siblings[label.parent_id][-1] == label.pk,
        }
        for label in labels
    ]
    context = _context(request, project, "taxonomy", rows=rows, model=taxonomy.model_status(project))
    return render(request, "manage/taxonomy.html", context)


@login_required
def label_add(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    labels = _labels(project)
    initial = {"parent": request.GET.get("parent", "")}
    form = LabelForm(request.POST or None, labels=labels, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            label = taxonomy.label_add(
                project=project,
                actor=request.user,
                key=data["key"],
                name=data["name"],
                description=data["description"],
                guideline=data["guideline"],
                color=data["color"],
                shortcut=data["shortcut"],
                parent_key=data["parent"] or None,
            )
        except TaxonomyInvalid as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Added “{label.name}” ({label.key}).")
            if "add_another" in request.POST:
                return redirect(f"{reverse('manage:label-add', args=[project.pk])}?parent={data['parent']}")
            return redirect("manage:taxonomy", project.pk)
    return render(request, "manage/label_form.html", _context(request, project, "taxonomy", form=form, label=None))


@login_required
def label_edit(request: HttpRequest, project_id: int, key: str) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    label = _label(project, key)
    initial = {
        "name": label.name,
        "parent": label.parent.key if label.parent_id else "",
        "shortcut": label.shortcut,
        "color": label.color,
        "description": label.description,
        "guideline": label.guideline,
    }
    form = LabelForm(request.POST or None, labels=_labels(project), editing=label, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            taxonomy.label_update(
                label=label,
                actor=request.user,
                name=data["name"],
                description=data["description"],
                guideline=data["guideline"],
                color=data["color"],
                shortcut=data["shortcut"],
                parent=data["parent"] or None,
            )
        except TaxonomyInvalid as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Saved “{data['name']}”.")
            return redirect("manage:taxonomy", project.pk)
    preview = taxonomy.operation_preview(project=project, operation="deprecate", label_keys=[label.key])
    context = _context(
        request,
        project,
        "taxonomy",
        form=form,
        label=label,
        usage=preview,
        guideline_html=markdown(label.guideline),
        children=list(label.children.values_list("name", flat=True)),
    )
    return render(request, "manage/label_form.html", context)


@login_required
@require_POST
def label_deprecate(request: HttpRequest, project_id: int, key: str) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    label = _label(project, key)
    try:
        if request.POST.get("restore"):
            taxonomy.label_restore(label=label, actor=request.user)
            messages.success(request, f"“{label.name}” is offered to reviewers again.")
        else:
            taxonomy.label_deprecate(label=label, actor=request.user)
            messages.success(
                request, f"“{label.name}” is deprecated: hidden for new labeling, kept in history and exports."
            )
    except TaxonomyInvalid as error:
        _error(request, error)
    return redirect("manage:taxonomy", project.pk)


@login_required
@require_POST
def label_delete(request: HttpRequest, project_id: int, key: str) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    label = _label(project, key)
    try:
        taxonomy.label_delete(label=label, actor=request.user)
    except (LabelInUse, TaxonomyInvalid) as error:
        _error(request, error)
        return redirect("manage:label-edit", project.pk, label.key)
    messages.success(request, f"Deleted “{label.name}”.")
    return redirect("manage:taxonomy", project.pk)


@login_required
@require_POST
def label_move(request: HttpRequest, project_id: int, key: str) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    label = _label(project, key)
    taxonomy.label_move(label=label, actor=request.user, offset=-1 if request.POST.get("direction") == "up" else 1)
    return redirect(f"{reverse('manage:taxonomy', args=[project.pk])}#label-{label.key}")


@login_required
@require_POST
def taxonomy_mode(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    multi = request.POST.get("multi_label") == "1"
    try:
        taxonomy.taxonomy_set_mode(project=project, actor=request.user, multi_label=multi)
    except TaxonomyInvalid as error:
        _error(request, error)
    else:
        messages.success(request, "Reviewers now choose " + ("one or more labels." if multi else "exactly one label."))
    return redirect("manage:taxonomy", project.pk)


@login_required
def labels_merge(request: HttpRequest, project_id: int) -> HttpResponse:
    """Choose labels and a target, see what the merge touches, then apply it (the preview is a second POST)."""
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    labels = _labels(project)
    initial = {"sources": request.GET.getlist("sources")}
    form = MergeForm(request.POST or None, labels=labels, initial=initial)
    preview = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        sources = [k for k in data["sources"] if k != form.target_key()]
        if "apply" in request.POST:
            try:
                target = taxonomy.labels_merge(
                    project=project,
                    actor=request.user,
                    source_keys=data["sources"],
                    target_key=form.target_key(),
                    target_name=data["new_name"],
                )
            except (TaxonomyInvalid, LabelsChanged) as error:
                form.add_error(None, str(error))
            else:
                messages.success(request, f"Merged {', '.join(sources)} into “{target.name}”.")
                return redirect("manage:taxonomy", project.pk)
        else:
            # What moves is the sources' annotations; an existing target's own stay where they are.
            target_key = form.target_key() if data["into"] == "existing" else ""
            preview = taxonomy.operation_preview(
                project=project, operation="merge", label_keys=sources, target_key=target_key
            )
            if len(set(sources + ([target_key] if target_key else []))) < 2:
                form.add_error("sources", "Choose at least two labels to merge.")
                preview = None
    return render(request, "manage/merge.html", _context(request, project, "taxonomy", form=form, preview=preview))


@login_required
def label_split(request: HttpRequest, project_id: int, key: str) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    label = _label(project, key)
    if request.method == "POST":
        formset = SplitPartFormSet(request.POST, prefix="part")
    else:
        wanted = request.GET.get("parts", "2")
        count = min(max(int(wanted), 2), 10) if wanted.isdigit() else 2
        formset = SplitPartFormSet(prefix="part", initial=[{} for _ in range(count)])
    preview = taxonomy.operation_preview(project=project, operation="split", label_keys=[label.key])
    confirm = False
    error = ""
    if request.method == "POST" and formset.is_valid():
        parts = [taxonomy.SplitPart(**form.cleaned_data) for form in formset if form.cleaned_data]
        if "apply" in request.POST:
            try:
                new_labels, requeued = taxonomy.label_split(label=label, actor=request.user, parts=parts)
            except TaxonomyInvalid as problem:
                error = str(problem)
            else:
                messages.success(
                    request,
                    f"Split “{label.name}” into {', '.join(n.name for n in new_labels)}; "
                    f"{requeued} document{'s' if requeued != 1 else ''} went back to the queue for re-review.",
                )
                return redirect("manage:taxonomy", project.pk)
        else:
            confirm = True
    context = _context(
        request, project, "taxonomy", label=label, formset=formset, preview=preview, confirm=confirm, error=error
    )
    return render(request, "manage/split.html", context)


@login_required
def taxonomy_import(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    form = TaxonomyImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if data["template"]:
                result = taxonomy.taxonomy_from_template(project=project, actor=request.user, template=data["template"])
            else:
                if data["file"]:
                    name = data["file"].name.lower()
                    fmt = "json" if name.endswith(".json") else "yaml"
                    content = data["file"].read()
                else:
                    fmt, content = data["format"] or "yaml", data["text"]
                parsed = taxonomy.taxonomy_parse(content, fmt=fmt)
                result = taxonomy.taxonomy_import(project=project, actor=request.user, data=parsed)
        except TaxonomyInvalid as error:
            form.add_error(None, str(error))
        else:
            if result.version is None:
                messages.info(request, "Nothing to change: the taxonomy already holds these labels as they are.")
            else:
                messages.success(
                    request,
                    f"Taxonomy v{result.version}: {len(result.added)} label(s) added, {len(result.updated)} updated"
                    + (f", {len(result.untouched)} not in the file left as they were." if result.untouched else "."),
                )
            return redirect("manage:taxonomy", project.pk)
    return render(request, "manage/import.html", _context(request, project, "taxonomy", form=form))


@login_required
def taxonomy_export(request: HttpRequest, project_id: int, fmt: str) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    if fmt not in ("json", "yaml"):
        raise Http404("Export as json or yaml.")
    body = taxonomy.taxonomy_export(project, fmt)
    content_type = "application/json" if fmt == "json" else "application/yaml"
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    version = taxonomy.taxonomy_for(project).version
    response["Content-Disposition"] = f'attachment; filename="docket-taxonomy-{project.pk}-v{version}.{fmt}"'
    return response


@login_required
def taxonomy_versions(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    versions = taxonomy.taxonomy_versions(project)
    rows = [{"version": v, "title": taxonomy.OPERATIONS.get(v.operation, v.operation)} for v in versions]
    return render(request, "manage/versions.html", _context(request, project, "versions", rows=rows))


@login_required
def taxonomy_version(request: HttpRequest, project_id: int, number: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_taxonomy")
    version = TaxonomyVersion.objects.filter(taxonomy__project=project, version=number).first()
    if version is None:
        raise Http404("No such taxonomy version.")
    depths: dict[str, int] = {}
    parents = {label["key"]: label["parent"] for label in version.labels}
    for label in version.labels:
        depth, current = 0, label["parent"]
        while current and depth < len(parents):
            depth, current = depth + 1, parents.get(current)
        depths[label["key"]] = depth
    mapping = taxonomy.label_key_mapping(project, number)
    labels = [
        {**label, "indent": depths[label["key"]] * 1.5, "now": mapping.get(label["key"])} for label in version.labels
    ]
    context = _context(
        request,
        project,
        "versions",
        version=version,
        title=taxonomy.OPERATIONS.get(version.operation, version.operation),
        labels=labels,
    )
    return render(request, "manage/version_detail.html", context)


# --- People -----------------------------------------------------------------------------------------------------


@login_required
def members_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_members")
    form = MemberAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            added = members.member_add(
                project=project,
                actor=request.user,
                identifier=form.cleaned_data["identifier"],
                role=form.cleaned_data["role"],
            )
        except (ValidationError, AlreadyMember) as error:
            form.add_error("identifier", " ".join(error.messages) if isinstance(error, ValidationError) else str(error))
        else:
            user = added.membership.user
            if added.created_user:
                link = request.build_absolute_uri(added.set_password_path)
                messages.success(
                    request,
                    f"Created the account {user.get_username()} and added it as {added.membership.get_role_display()}. "
                    f"Send them this link to choose a password (it works once): {link}",
                )
            else:
                messages.success(
                    request, f"Added {user.get_username()} as {added.membership.get_role_display().lower()}."
                )
            return redirect("manage:members", project.pk)
    memberships = (
        Membership.objects.filter(project=project)
        .select_related("user__service_account", "user__invitation")  # what may_set_credentials reads per row
        .prefetch_related("user__memberships")
        .order_by("role", "user__username")
    )
    admins = sum(m.role == Membership.Role.ADMIN for m in memberships)
    rows = [
        {
            "membership": m,
            "last_admin": m.role == Membership.Role.ADMIN and admins == 1,
            "may_set_credentials": permissions.may_set_credentials(request.user, m.user, project),
        }
        for m in memberships
    ]
    context = _context(request, project, "members", form=form, rows=rows, roles=Membership.Role.choices)
    return render(request, "manage/members.html", context)


@login_required
@require_POST
def member_role(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_members")
    membership = members.membership_for(project, membership_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            members.member_set_role(membership=membership, actor=request.user, role=form.cleaned_data["role"])
        except (LastAdmin, ValidationError) as error:
            _error(request, error)
        else:
            role = Membership.Role(form.cleaned_data["role"]).label.lower()
            messages.success(request, f"{membership.user.get_username()} is now {role}.")
    return redirect("manage:members", project.pk)


@login_required
@require_POST
def member_remove(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_members")
    membership = members.membership_for(project, membership_id)
    try:
        members.member_remove(membership=membership, actor=request.user)
    except LastAdmin as error:
        _error(request, error)
    else:
        messages.success(request, f"Removed {membership.user.get_username()} from {project.name}.")
    return redirect("manage:members", project.pk)


@login_required
@require_POST
def member_password_link(request: HttpRequest, project_id: int, membership_id: int) -> HttpResponse:
    """A fresh set-password link for an account this admin invited that has not signed in yet (the first got lost)."""
    project = permissions.access_project_by_id(request.user, project_id, action="manage_members")
    membership = members.membership_for(project, membership_id)
    try:
        path = members.password_link_for(project=project, actor=request.user, membership=membership)
    except NotAllowed as error:
        _error(request, error)
    else:
        link = request.build_absolute_uri(path)
        name = membership.user.get_username()
        messages.success(request, f"Send {name} this link to choose a password (it works once): {link}")
    return redirect("manage:members", project.pk)


# --- Audit log --------------------------------------------------------------------------------------------------


def _audit_filtered(request: HttpRequest, project: Project) -> tuple[AuditFilterForm, Any]:
    form = AuditFilterForm(
        request.GET or None, actions=audit.audit_actions(project), actors=audit.audit_actors(project)
    )
    filters: dict[str, Any] = {}
    if form.is_valid():
        filters = {k: v for k, v in form.cleaned_data.items() if v}
    return form, audit.audit_events(project=project, **filters)


def _as_json(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, cls=DjangoJSONEncoder)


@login_required
@require_GET
def audit_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="view_audit")
    form, events = _audit_filtered(request, project)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"event": e, "before": _as_json(e.before), "after": _as_json(e.after)} for e in page]
    query = request.GET.copy()
    query.pop("page", None)
    context = _context(request, project, "audit", form=form, page=page, rows=rows, query=query.urlencode())
    return render(request, "manage/audit.html", context)


@login_required
@require_GET
def audit_export(request: HttpRequest, project_id: int, fmt: str) -> StreamingHttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="view_audit")
    if fmt not in audit.AUDIT_EXPORT_FORMATS:
        raise Http404("Export as csv or jsonl.")
    _, events = _audit_filtered(request, project)
    content_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response = StreamingHttpResponse(audit.audit_export(events, fmt), content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="docket-audit-{project.pk}.{fmt}"'
    return response


# --- Documents in and out -------------------------------------------------------------------------------------

IMPORT_ERRORS_SHOWN = 500


def _wants_json(request: HttpRequest) -> bool:
    """The upload page's script asks for JSON so it can show its progress bar; without script a form posts."""
    return "application/json" in request.headers.get("Accept", "")


@login_required
def import_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Upload a CSV, JSON Lines or text file; a worker imports it through the same service as the command line."""
    project = permissions.access_project_by_id(request.user, project_id, action="import")
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        options = ImportOptions(
            text_field=data["text_field"].strip(),
            id_field=data["id_field"].strip(),
            label_field=data["label_field"].strip() or None,
            format=data["format"] or None,
        )
        try:
            batch = imports.import_upload(project=project, uploaded=data["file"], options=options, user=request.user)
        except ImportRejected as error:
            form.add_error("file", str(error))
        else:
            target = reverse("manage:import-batch", args=[project.pk, batch.pk])
            return JsonResponse({"redirect": target}) if _wants_json(request) else redirect(target)
    if request.method == "POST" and _wants_json(request):
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    recent = ImportBatch.objects.filter(project=project).select_related("created_by")[:10]
    context = _context(request, project, "import", form=form, recent=recent)
    return render(request, "manage/import_documents.html", context, status=400 if form.errors else 200)


def _batch(project: Project, batch_id: int) -> ImportBatch:
    batch = ImportBatch.objects.filter(project=project, pk=batch_id).select_related("created_by").first()
    if batch is None:
        raise Http404("No such import in this project.")
    return batch


def _batch_state(batch: ImportBatch) -> dict[str, Any]:
    return {
        "status": batch.status,
        "status_display": batch.get_status_display(),
        "finished": batch.status in (ImportBatch.Status.COMPLETED, ImportBatch.Status.FAILED),
        "rows": batch.rows_seen,
        "created": batch.created_count,
        "duplicates": batch.duplicate_count,
        "rejected": batch.rejected_count,
        "annotations": batch.annotation_count,
        "error": batch.error,
    }


@login_required
def import_batch_page(request: HttpRequest, project_id: int, batch_id: int) -> HttpResponse:
    """What an import stored and what it refused, row by row; it waits for the worker while the file runs."""
    project = permissions.access_project_by_id(request.user, project_id, action="import")
    batch = _batch(project, batch_id)
    errors = list(batch.row_errors.order_by("line", "id")[:IMPORT_ERRORS_SHOWN])
    context = _context(
        request, project, "import", batch=batch, state=_batch_state(batch), errors=errors, more=batch.row_errors.count()
    )
    return render(request, "manage/import_batch.html", context)


@login_required
@require_POST
def import_batch_rerun(request: HttpRequest, project_id: int, batch_id: int) -> HttpResponse:
    """Run a failed upload again from its stored file (after the cause was fixed, e.g. a missing label added)."""
    project = permissions.access_project_by_id(request.user, project_id, action="import")
    batch = _batch(project, batch_id)
    try:
        imports.import_batch_rerun(batch=batch, actor=request.user)
    except ImportRejected as error:
        messages.error(request, str(error))
    else:
        messages.info(request, f"{batch.file_name} is being imported again.")
    return redirect("manage:import-batch", project.pk, batch.pk)


@login_required
@require_GET
def import_batch_status(request: HttpRequest, project_id: int, batch_id: int) -> JsonResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="import")
    return JsonResponse(_batch_state(_batch(project, batch_id)))


@login_required
@require_GET
def export_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Every download Docket has, in one place: documents with labels, the taxonomy, the audit log."""
    project = permissions.access_project_by_id(request.user, project_id, action="export")
    context = _context(
        request,
        project,
        "export",
        document_count=Document.objects.filter(project=project).count(),
        can_view_quality=permissions.can(request.user, project, "view_quality"),
    )
    return render(request, "manage/export.html", context)


@login_required
@require_GET
def documents_export(request: HttpRequest, project_id: int, fmt: str) -> StreamingHttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="export")
    if fmt not in EXPORT_FORMATS:
        raise Http404(f"Export as one of {', '.join(EXPORT_FORMATS)}.")
    stream = exports.documents_export(project=project, fmt=fmt, actor=request.user)
    response = StreamingHttpResponse(stream, content_type=exports.export_content_type(fmt))
    response["Content-Disposition"] = f'attachment; filename="docket-{exports.export_file_name(project, fmt)}"'
    return response


@login_required
@require_GET
def label_studio_config(request: HttpRequest, project_id: int) -> HttpResponse:
    """The labeling config a Label Studio project needs for Docket's tasks: the text and the project's labels."""
    project = permissions.access_project_by_id(request.user, project_id, action="export")
    response = HttpResponse(exports.label_studio_config(project), content_type="application/xml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="docket-project-{project.pk}-label-studio.xml"'
    return response


# --- New projects and first passwords -------------------------------------------------------------------------


@login_required
def project_new(request: HttpRequest) -> HttpResponse:
    if not permissions.can_create_projects(request.user):
        raise PermissionDenied("Only Docket staff may create projects.")
    form = ProjectCreateForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        parsed = None
        try:
            if data["start"] == "file":
                fmt = "json" if data["file"].name.lower().endswith(".json") else "yaml"
                parsed = taxonomy.taxonomy_parse(data["file"].read(), fmt=fmt)
            project = _project_create(request, data, parsed)
        except (TaxonomyInvalid, ValidationError) as error:
            form.add_error(None, str(error) if isinstance(error, DocketError) else " ".join(error.messages))
        else:
            messages.success(request, f"Created {project.name}; you are its admin.")
            return redirect("manage:taxonomy", project.pk)
    return render(request, "manage/project_new.html", {"form": form})


def _project_create(request: HttpRequest, data: dict[str, Any], parsed: dict[str, Any] | None) -> Project:
    with transaction.atomic():
        project = project_create(
            name=data["name"], description=data["description"], multi_label=data["multi_label"], created_by=request.user
        )
        if data["start"] == "file":
            parsed = {k: v for k, v in parsed.items() if k not in ("multi_label", "mode")}
            taxonomy.taxonomy_import(project=project, actor=request.user, data=parsed)
        elif data["start"] != "empty":
            taxonomy.taxonomy_from_template(project=project, actor=request.user, template=data["start"])
    return project


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """Where a person added by an admin chooses their first password (Django's reset-token check)."""

    template_name = "manage/set_password.html"
    success_url = reverse_lazy("login")
    post_reset_login = False
    token_generator = members.invitation_tokens

    def get_user(self, uidb64):
        # A service account never gets a password, whatever link is presented.
        user = super().get_user(uidb64)
        return None if user is None or permissions.is_service_account(user) else user

    def form_valid(self, form):
        messages.success(self.request, "Your password is set; log in with it.")
        return super().form_valid(form)
