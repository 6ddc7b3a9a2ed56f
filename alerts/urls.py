from __future__ import annotations

from django.urls import path

from alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.alert_list, name="list"),
    path("_table", views.alert_table, name="table"),
    path("<int:alert_id>/acknowledge", views.alert_acknowledge, name="acknowledge"),
    path("<int:alert_id>/resolve", views.alert_resolve, name="resolve"),
]
