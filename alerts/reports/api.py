"""/api/v1/reports/: list, one report's figures, and "generate now" for risk managers."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import access
from accounts.permissions import IsDeskMember
from alerts.models import Report, ReportPeriod
from alerts.reports import services, views


class ReportOutput(serializers.ModelSerializer):
    accounts = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Report
        fields = ["id", "period", "start", "end", "language", "accounts", "created_at", "delivered_at", "url"]

    def get_url(self, report: Report) -> str:
        return f"{settings.SITE_URL}/reports/{report.id}/"


class ReportDetailOutput(ReportOutput):
    class Meta(ReportOutput.Meta):
        fields = [*ReportOutput.Meta.fields, "figures"]


class ReportListApi(APIView):
    permission_classes = [IsDeskMember]

    class InputSerializer(serializers.Serializer):
        date_from = serializers.DateField(source="from")
        date_to = serializers.DateField(source="to")
        accounts = serializers.ListField(
            child=serializers.IntegerField(min_value=1, max_value=2**31 - 1), required=False
        )
        language = serializers.ChoiceField(choices=settings.LANGUAGES, required=False)

    @extend_schema(responses=ReportOutput(many=True))
    def get(self, request):
        pages = LimitOffsetPagination()
        rows = pages.paginate_queryset(
            services.reports_visible_to(request.user).prefetch_related("accounts"), request, view=self
        )
        return pages.get_paginated_response(ReportOutput(rows, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: ReportDetailOutput})
    def post(self, request):
        if not access.is_risk_manager(request.user):
            raise PermissionDenied("Risk managers only.")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        try:
            start, end = views.parse_range(d["from"].isoformat(), d["to"].isoformat())
        except ValueError:
            raise ValidationError({"date_to": ["on or after date_from, at most a year apart"]}) from None
        accounts = [access.get_account_for_user(request.user, i) for i in d.get("accounts", [])] or None
        report = services.report_generate(
            period=ReportPeriod.CUSTOM,
            start=start,
            end=end,
            accounts=accounts,
            language=d.get("language") or settings.LANGUAGE_CODE,
            by=request.user,
        )
        return Response(ReportDetailOutput(report).data, status=status.HTTP_201_CREATED)


class ReportDetailApi(APIView):
    permission_classes = [IsDeskMember]

    @extend_schema(responses=ReportDetailOutput)
    def get(self, request, report_id: int):
        return Response(ReportDetailOutput(views.get_report_for_user(request.user, report_id)).data)
