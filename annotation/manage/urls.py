"""Routes of the project admin pages, mounted once in config/urls.py."""

from django.urls import path

from annotation.manage import views

app_name = "manage"

project = "projects/<int:project_id>/manage/"

urlpatterns = [
    path("projects/new/", views.project_new, name="project-create"),
    path("accounts/set-password/<uidb64>/<token>/", views.SetPasswordView.as_view(), name="set-password"),
    path(project, views.manage_index, name="index"),
    path(f"{project}settings/", views.project_settings, name="settings"),
    path(f"{project}taxonomy/", views.taxonomy_page, name="taxonomy"),
    path(f"{project}taxonomy/mode/", views.taxonomy_mode, name="taxonomy-mode"),
    path(f"{project}taxonomy/labels/new/", views.label_add, name="label-add"),
    path(f"{project}taxonomy/labels/<slug:key>/", views.label_edit, name="label-edit"),
    path(f"{project}taxonomy/labels/<slug:key>/split/", views.label_split, name="label-split"),
    path(f"{project}taxonomy/labels/<slug:key>/deprecate/", views.label_deprecate, name="label-deprecate"),
    path(f"{project}taxonomy/labels/<slug:key>/delete/", views.label_delete, name="label-delete"),
    path(f"{project}taxonomy/labels/<slug:key>/move/", views.label_move, name="label-move"),
    path(f"{project}taxonomy/merge/", views.labels_merge, name="merge"),
    path(f"{project}taxonomy/import/", views.taxonomy_import, name="taxonomy-import"),
    path(f"{project}taxonomy/export.<str:fmt>", views.taxonomy_export, name="taxonomy-export"),
    path(f"{project}taxonomy/versions/", views.taxonomy_versions, name="versions"),
    path(f"{project}taxonomy/versions/<int:number>/", views.taxonomy_version, name="version"),
    path(f"{project}members/", views.members_page, name="members"),
    path(f"{project}members/<int:membership_id>/role/", views.member_role, name="member-role"),
    path(f"{project}members/<int:membership_id>/remove/", views.member_remove, name="member-remove"),
    path(
        f"{project}members/<int:membership_id>/password-link/",
        views.member_password_link,
        name="member-password-link",
    ),
    path(f"{project}import/", views.import_page, name="import"),
    path(f"{project}import/<int:batch_id>/", views.import_batch_page, name="import-batch"),
    path(f"{project}import/<int:batch_id>/status", views.import_batch_status, name="import-batch-status"),
    path(f"{project}import/<int:batch_id>/rerun/", views.import_batch_rerun, name="import-batch-rerun"),
    path(f"{project}export/", views.export_page, name="export"),
    path(f"{project}export/documents.<str:fmt>", views.documents_export, name="documents-export"),
    path(f"{project}export/label-studio-config.xml", views.label_studio_config, name="label-studio-config"),
    # The audit log is read and exported here; there is deliberately no route that edits or deletes it.
    path(f"{project}audit/", views.audit_page, name="audit"),
    path(f"{project}audit/export.<str:fmt>", views.audit_export, name="audit-export"),
]
