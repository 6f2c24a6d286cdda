"""Django admin for superusers and staff: every table, plus import upload and export per project."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from annotation import permissions
from annotation.exceptions import ImportRejected
from annotation.manage.forms import ImportUploadForm
from annotation.models import (
    Annotation,
    AnnotationLabel,
    AnnotationRevision,
    AuditEvent,
    Document,
    Flag,
    ImportBatch,
    ImportRowError,
    Label,
    Lease,
    Membership,
    Project,
    Skip,
    Taxonomy,
    TaxonomyVersion,
)
from annotation.services.exports import EXPORT_FORMATS, documents_export, export_content_type, export_file_name
from annotation.services.imports import ImportOptions, detect_format, import_batch_rerun, import_upload
from annotation.services.projects import project_delete


class ProjectsOfStaffFilter(admin.SimpleListFilter):
    """ "By project", offering only the projects the staff member may see: no other project's name shows here."""

    title = "project"
    parameter_name = "project"
    project_path = "project"

    def lookups(self, request, model_admin):
        return list(permissions.projects_for(request.user).order_by("name").values_list("pk", "name"))

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not str(value).isdigit():
            return queryset.none()
        return queryset.filter(**{self.project_path: int(value)})


def by_project(path: str) -> type[ProjectsOfStaffFilter]:
    """The project filter for a table reaching its project through `path` (e.g. "document__project")."""
    return type(f"ByProject_{path}", (ProjectsOfStaffFilter,), {"project_path": path})


class ProjectScopedAdmin(admin.ModelAdmin):
    """A table that belongs to projects: a staff member who is not a superuser sees only their own projects' rows,
    filters and choices, so one project's admin never reads another project's name in the Django admin."""

    project_path = "project"

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        if request.user.is_superuser:
            return rows
        return rows.filter(**{f"{self.project_path}__in": permissions.projects_for(request.user).values("pk")})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Project and not request.user.is_superuser:
            kwargs["queryset"] = permissions.projects_for(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdmin):
    project_path = "pk"
    list_display = ["name", "multi_label", "query_strategy", "document_count", "actions_column"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    def get_deleted_objects(self, objs, request):
        # A project goes with everything in it: answers, their revisions and labels in use, which are protected
        # one by one; project_delete removes it all in one audited transaction, and the audit log stays.
        deleted, counts, _perms_needed, _protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), []

    def delete_model(self, request, obj: Project) -> None:
        # Through the service: audited, and the project's files go with it.
        project_delete(actor=request.user, project=obj)

    def delete_queryset(self, request, queryset) -> None:
        for project in queryset:
            project_delete(actor=request.user, project=project)

    def get_queryset(self, request):
        # Each listed project's documents counted in the list's own query; a subquery in the select list is
        # evaluated for the page's rows only.
        documents = Document.objects.filter(project=OuterRef("pk")).order_by().values("project")
        count = Subquery(documents.annotate(n=Count("*")).values("n"))
        return super().get_queryset(request).annotate(document_total=Coalesce(count, 0))

    @admin.display(description="Documents", ordering="document_total")
    def document_count(self, project: Project) -> int:
        return project.document_total

    @admin.display(description="")
    def actions_column(self, project: Project) -> str:
        return format_html(
            '<a href="{}">Import</a> · <a href="{}">Export JSONL</a> · <a href="{}">Export CSV</a>',
            reverse("admin:annotation_project_import", args=[project.pk]),
            reverse("admin:annotation_project_export", args=[project.pk, "jsonl"]),
            reverse("admin:annotation_project_export", args=[project.pk, "csv"]),
        )

    def get_urls(self):
        extra = [
            path(
                "<int:project_id>/import/",
                self.admin_site.admin_view(self.import_view),
                name="annotation_project_import",
            ),
            path(
                "<int:project_id>/export/<str:fmt>/",
                self.admin_site.admin_view(self.export_view),
                name="annotation_project_export",
            ),
        ]
        return extra + super().get_urls()

    def import_view(self, request: HttpRequest, project_id: int) -> HttpResponse:
        project = permissions.access_project_by_id(request.user, project_id, action="import")
        form = ImportUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                options = ImportOptions(
                    text_field=data["text_field"],
                    id_field=data["id_field"],
                    label_field=data["label_field"] or None,
                    format=detect_format(data["file"].name, data["format"] or None),
                )
            except ImportRejected as error:
                form.add_error("file", str(error))
            else:
                batch = import_upload(project=project, uploaded=data["file"], options=options, user=request.user)
                messages.info(request, f"{batch.file_name} is being imported; this page shows the result.")
                return HttpResponseRedirect(reverse("admin:annotation_importbatch_change", args=[batch.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import documents into {project.name}",
            "project": project,
            "form": form,
            "opts": self.model._meta,
            "recent": project.import_batches.all()[:10],
        }
        return TemplateResponse(request, "admin/annotation/import_upload.html", context)

    def export_view(self, request: HttpRequest, project_id: int, fmt: str) -> StreamingHttpResponse:
        project = permissions.access_project_by_id(request.user, project_id, action="export")
        if fmt not in EXPORT_FORMATS:
            raise PermissionDenied(f"Unknown export format {fmt}.")
        stream = documents_export(project=project, fmt=fmt, actor=request.user)
        response = StreamingHttpResponse(stream, content_type=export_content_type(fmt))
        response["Content-Disposition"] = f'attachment; filename="docket-{export_file_name(project, fmt)}"'
        return response


class ImportRowErrorInline(admin.TabularInline):
    model = ImportRowError
    extra = 0
    can_delete = False
    readonly_fields = ["line", "reason"]
    max_num = 0
    ordering = ["line"]

    def get_queryset(self, request):
        # A file with many bad rows shows its first problems here; the command line lists them all.
        return super().get_queryset(request).order_by("line")


@admin.register(ImportBatch)
class ImportBatchAdmin(ProjectScopedAdmin):
    list_display = [
        "file_name",
        "project",
        "status",
        "created_count",
        "duplicate_count",
        "rejected_count",
        "created_at",
    ]
    list_filter = ["status", by_project("project")]
    readonly_fields = [
        "project",
        "created_by",
        "created_at",
        "finished_at",
        "file_name",
        "format",
        "options",
        "status",
        "rows_seen",
        "created_count",
        "duplicate_count",
        "rejected_count",
        "annotation_count",
        "error",
    ]
    exclude = ["stored_path"]
    inlines = [ImportRowErrorInline]
    change_form_template = "admin/annotation/importbatch_change_form.html"

    def get_urls(self):
        rerun = path(
            "<int:batch_id>/rerun/", self.admin_site.admin_view(self.rerun_view), name="annotation_importbatch_rerun"
        )
        return [rerun, *super().get_urls()]

    def rerun_view(self, request: HttpRequest, batch_id: int) -> HttpResponse:
        """Run a failed upload again from its stored file (after the cause was fixed: a label added, an outage)."""
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:annotation_importbatch_change", args=[batch_id]))
        batch = self.get_queryset(request).filter(pk=batch_id).first()
        if batch is None:
            raise PermissionDenied("No such import batch in your projects.")
        permissions.access_project_by_id(request.user, batch.project_id, action="import")
        try:
            batch = import_batch_rerun(batch=batch, actor=request.user)
        except ImportRejected as error:
            messages.error(request, str(error))
        else:
            messages.info(request, f"{batch.file_name} is being imported again; this page shows the result.")
        return HttpResponseRedirect(reverse("admin:annotation_importbatch_change", args=[batch_id]))

    # Staff project admins see their own projects' imports, through the same check as the upload page.
    def get_queryset(self, request):
        batches = super().get_queryset(request)
        if request.user.is_superuser:
            return batches
        importable = [
            p.pk for p in permissions.projects_for(request.user) if permissions.can(request.user, p, "import")
        ]
        return batches.filter(project_id__in=importable)

    def has_view_permission(self, request, obj=None):
        if obj is None:
            return request.user.is_staff
        return permissions.can(request.user, obj.project, "import")

    def has_module_permission(self, request):
        return request.user.is_staff

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(Document)
class DocumentAdmin(ProjectScopedAdmin):
    list_display = ["__str__", "project", "status", "short_text", "created_at"]
    list_filter = ["status", by_project("project")]
    search_fields = ["external_id", "text"]
    raw_id_fields = ["import_batch"]
    readonly_fields = ["content_hash", "random_key"]
    show_full_result_count = False

    @admin.display(description="Text")
    def short_text(self, document: Document) -> str:
        return document.text[:120]


class AnnotationLabelInline(admin.TabularInline):
    model = AnnotationLabel
    extra = 0


@admin.register(Annotation)
class AnnotationAdmin(ProjectScopedAdmin):
    project_path = "document__project"
    list_display = ["id", "document", "reviewer", "source", "created_at", "updated_at"]
    list_select_related = ["document", "reviewer"]  # reviewer may be null: Django would leave it to one query a row
    list_filter = ["source", by_project("document__project")]
    raw_id_fields = ["document"]
    inlines = [AnnotationLabelInline]


@admin.register(AnnotationRevision)
class AnnotationRevisionAdmin(ProjectScopedAdmin):
    project_path = "annotation__document__project"
    list_display = ["annotation", "label_keys", "changed_by", "changed_at", "reason"]
    raw_id_fields = ["annotation"]


class ReadOnlyAdmin(ProjectScopedAdmin):
    """Shown to superusers for inspection only; changes go through the services that version and audit them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0
    fields = ["key", "name", "shortcut", "order", "parent", "color", "deprecated"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Taxonomy)
class TaxonomyAdmin(ReadOnlyAdmin):
    """Taxonomy edits must make a new version, remap annotations and request a retrain: the editor does that."""

    list_display = ["project", "version", "updated_at", "editor_link"]
    inlines = [LabelInline]

    @admin.display(description="Edit")
    def editor_link(self, taxonomy: Taxonomy) -> str:
        return format_html(
            '<a href="{}">Open the taxonomy editor</a>', reverse("manage:taxonomy", args=[taxonomy.project_id])
        )


@admin.register(Label)
class LabelAdmin(ReadOnlyAdmin):
    project_path = "taxonomy__project"
    list_display = ["name", "key", "taxonomy", "shortcut", "order", "deprecated"]
    list_filter = [by_project("taxonomy__project"), "deprecated"]


@admin.register(TaxonomyVersion)
class TaxonomyVersionAdmin(ReadOnlyAdmin):
    project_path = "taxonomy__project"
    list_display = ["taxonomy", "version", "operation", "created_by", "created_at"]
    list_filter = [by_project("taxonomy__project")]


@admin.register(Membership)
class MembershipAdmin(ProjectScopedAdmin):
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role", by_project("project")]


@admin.register(Lease)
class LeaseAdmin(ProjectScopedAdmin):
    project_path = "document__project"
    list_display = ["document", "reviewer", "acquired_at", "expires_at"]
    raw_id_fields = ["document"]


@admin.register(Skip)
class SkipAdmin(ProjectScopedAdmin):
    project_path = "document__project"
    list_display = ["document", "reviewer", "created_at"]
    raw_id_fields = ["document"]


@admin.register(Flag)
class FlagAdmin(ProjectScopedAdmin):
    project_path = "document__project"
    list_display = ["document", "reviewer", "comment", "created_at", "resolved_at"]
    raw_id_fields = ["document"]


@admin.register(AuditEvent)
class AuditEventAdmin(ProjectScopedAdmin):
    """Read-only: the log is append-only, even for superusers."""

    list_display = ["created_at", "actor_label", "project_label", "action", "target_type", "target_id"]
    list_filter = ["action", by_project("project")]
    search_fields = ["actor_label", "action", "target_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
