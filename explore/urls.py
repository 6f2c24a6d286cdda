from django.urls import path

from explore import views

app_name = "explore"

urlpatterns = [
    path("", views.explore_page, name="explore"),
    path("bulk-label/", views.bulk_label, name="bulk-label"),
    path("review-next/", views.review_next, name="review-next"),
    path("batches/<uuid:batch_id>/", views.batch_detail, name="batch"),
    path("batches/<uuid:batch_id>/undo/", views.batch_undo, name="batch-undo"),
]
