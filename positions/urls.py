from __future__ import annotations

from django.urls import path

from positions import views

app_name = "positions"

urlpatterns = [
    path("", views.position_list, name="list"),
    path("_table", views.position_table, name="table"),
    path("_closed", views.closed_table, name="closed"),
    path("what-if/", views.whatif, name="whatif"),
]
