from __future__ import annotations

from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.account_list, name="list"),
    path("_table", views.account_table, name="table"),
    path("_actions", views.action_table, name="actions"),
    path("actions/<int:action_id>/review", views.action_review, name="action_review"),
    path("actions/<int:action_id>/<str:decision>", views.action_decide, name="action_decide"),
    path("<int:account_id>/<str:action>/confirm", views.account_confirm, name="confirm"),
    path("<int:account_id>/<str:action>", views.account_act, name="act"),
]
