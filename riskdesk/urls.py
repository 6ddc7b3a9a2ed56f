from __future__ import annotations

from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from accounts import api as accounts_api
from accounts import api_auth
from accounts.views import DeskLoginView, DeskLogoutView
from alerts.reports import api as reports_api
from positions import api_history
from riskdesk import views as desk_views
from riskdesk.health import health
from riskdesk.metrics import metrics
from rules import api as rules_api
from rules import api_orders

api_v1 = [
    path("auth/token/", api_auth.TokenObtainApi.as_view(), name="token_obtain"),
    path("auth/token/refresh/", api_auth.TokenRefreshApi.as_view(), name="token_refresh"),
    path("me/", accounts_api.MeApi.as_view(), name="me"),
    path("accounts/", accounts_api.AccountListApi.as_view(), name="account_list"),
    path("accounts/<int:account_id>/", accounts_api.AccountDetailApi.as_view(), name="account_detail"),
    path("profiles/", rules_api.ProfileListApi.as_view(), name="profile_list"),
    path("profiles/<int:profile_id>/", rules_api.ProfileDetailApi.as_view(), name="profile_detail"),
    path("profiles/<int:profile_id>/accounts/", rules_api.ProfileAccountsApi.as_view(), name="profile_accounts"),
    path("profiles/<int:profile_id>/history/", rules_api.ProfileHistoryApi.as_view(), name="profile_history"),
    path("orders/check", api_orders.OrderCheckApi.as_view(), name="orders_check"),
    path("orders", api_orders.OrdersApi.as_view(), name="orders"),
    path("accounts/<int:account_id>/risk", api_orders.AccountRiskApi.as_view(), name="account_risk"),
    path("accounts/<int:account_id>/trading-state", api_orders.TradingStateApi.as_view(), name="account_trading_state"),
    path("accounts/<int:account_id>/kill", api_orders.KillApi.as_view(), name="account_kill"),
    # history: the database and the Parquet archive read as one (docs/ARCHIVE.md)
    path("orders/log", api_history.OrderLogHistoryApi.as_view(), name="order_log"),
    path("alerts", api_history.AlertHistoryApi.as_view(), name="alert_history"),
    path("reports/", reports_api.ReportListApi.as_view(), name="report_list"),
    path("reports/<int:report_id>/", reports_api.ReportDetailApi.as_view(), name="report_detail"),
    path("", include("rules.allocation.api_urls")),  # risk/var, allocation (docs/ALLOCATION.md)
]

urlpatterns = [
    # The desk (pages and their htmx partials; live updates over /ws/desk/, see docs/DASHBOARD.md)
    path("", desk_views.overview, name="overview"),
    path("_overview", desk_views.overview_live, name="overview_live"),
    path("_status", desk_views.status_strip, name="status_strip"),
    path("login/", DeskLoginView.as_view(), name="desk_login"),
    path("logout/", DeskLogoutView.as_view(), name="desk_logout"),
    path("accounts/", include("accounts.urls")),
    path("positions/", include("positions.urls")),
    path("alerts/", include("alerts.urls")),
    path("rules/", include("rules.urls")),
    path("reports/", include("alerts.reports.urls")),
    path("allocation/", include("rules.allocation.urls")),
    path("health", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its script as a file: the CSP allows no inline script (settings "Security").
    path("api/docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api_docs"),
    # Redoc's bundle styles itself with <style> elements it creates and searches in a blob: worker;
    # this page alone allows both (still no script or style from anywhere but this site).
    path(
        "api/redoc",
        csp_update({"style-src": ["'unsafe-inline'"], "worker-src": ["'self'", "blob:"]})(
            SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html")
        ),
        name="api_redoc",
    ),
    path("i18n/", include("django.conf.urls.i18n")),
]
