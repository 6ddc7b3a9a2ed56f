from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import accounts_visible_to, get_account_for_user
from accounts.permissions import IsDeskMember
from accounts.serializers import ExchangeAccountSerializer


class AccountListApi(generics.ListAPIView):
    permission_classes = [IsDeskMember]
    serializer_class = ExchangeAccountSerializer

    def get_queryset(self):
        return accounts_visible_to(self.request.user).prefetch_related("traders")


class AccountDetailApi(APIView):
    permission_classes = [IsDeskMember]
    serializer_class = ExchangeAccountSerializer

    def get(self, request, account_id: int):
        account = get_account_for_user(request.user, account_id)
        return Response(ExchangeAccountSerializer(account).data)


class MeApi(APIView):
    permission_classes = [IsDeskMember]

    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField()
        role = serializers.CharField()
        accounts = serializers.ListField(child=serializers.IntegerField())

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        user = request.user
        return Response(
            {
                "username": user.username,
                "role": user.role,
                "accounts": sorted(accounts_visible_to(user).values_list("id", flat=True)),
            }
        )
