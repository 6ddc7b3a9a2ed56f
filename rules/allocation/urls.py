from __future__ import annotations

from django.urls import path

from rules.allocation import views

app_name = "allocation"

urlpatterns = [
    path("", views.allocation_page, name="page"),
    path("apply", views.allocation_apply, name="apply"),
]
