"""Included inside /api/v1/ (the "v1" namespace), next to the other APIs."""

from __future__ import annotations

from django.urls import path

from rules.allocation import api

urlpatterns = [
    path("risk/var", api.RiskVarApi.as_view(), name="risk_var"),
    path("allocation", api.AllocationApi.as_view(), name="allocation"),
    path("allocation/apply", api.AllocationApplyApi.as_view(), name="allocation_apply"),
]
