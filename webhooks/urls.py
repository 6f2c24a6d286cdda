from django.urls import path

from webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("", views.webhooks_page, name="page"),
    path("<int:webhook_id>/delete/", views.webhook_delete, name="delete"),
    path("<int:webhook_id>/ping/", views.webhook_ping, name="ping"),
    path("deliveries/<int:delivery_id>/replay/", views.delivery_replay, name="replay"),
]
