from __future__ import annotations

from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.account_list, name="list"),
    path("_table", views.account_table, name="table"),
    path("<int:account_id>/<str:action>/confirm", views.account_confirm, name="confirm"),
    path("<int:account_id>/<str:action>", views.account_act, name="act"),
]
