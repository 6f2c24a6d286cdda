"""Review quality pages, mounted under projects/<project_id>/quality/."""

from django.urls import path

from quality import views

app_name = "quality"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("adjudication/", views.adjudication_page, name="adjudication"),
    path("adjudication/<int:document_id>/", views.adjudication_decide_view, name="adjudicate"),
    path("gold/", views.gold_page, name="gold"),
    path("gold/remove/<int:document_id>/", views.gold_remove_view, name="gold-remove"),
    path("settings/", views.settings_view, name="settings"),
    path("label-errors/", views.label_errors_page, name="label-errors"),
    path("label-errors/<int:document_id>/send-back/", views.send_back_view, name="send-back"),
]
