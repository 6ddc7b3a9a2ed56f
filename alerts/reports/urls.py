from __future__ import annotations

from django.urls import path

from alerts.reports import views

app_name = "reports"

urlpatterns = [
    path("", views.report_list, name="list"),
    path("generate", views.report_generate, name="generate"),
    path("<int:report_id>/", views.report_detail, name="detail"),
    path("<int:report_id>/<str:fmt>", views.report_download, name="download"),
]
