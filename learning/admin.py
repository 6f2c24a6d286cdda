"""Django admin views of the learning tables, read-only: versions switch through the models page's services."""

from django.contrib import admin

from annotation.admin import ProjectScopedAdmin, by_project
from learning.models import EmbeddingShard, EvaluationReservation, ModelVersion, TrainingRun


class ReadOnlyAdmin(ProjectScopedAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("project", "number", "status", "kind", "train_label_count", "eval_label_count", "macro_f1")
    list_filter = ("status", "kind", by_project("project"))


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = ("project", "id", "kind", "trigger", "status", "phase", "started_at", "finished_at")
    list_filter = ("status", "kind", by_project("project"))


@admin.register(EvaluationReservation)
class EvaluationReservationAdmin(ReadOnlyAdmin):
    list_display = ("document", "project", "created_at")
    list_filter = (by_project("project"),)


@admin.register(EmbeddingShard)
class EmbeddingShardAdmin(ReadOnlyAdmin):
    list_display = ("project", "body_id", "document_count", "dimension", "created_at")
    list_filter = (by_project("project"),)
