from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from credits import selectors, services
from credits.serializers import (
    BalanceSerializer,
    CreditResultSerializer,
    DeductRequestSerializer,
    GrantRequestSerializer,
    PendingChangeSerializer,
    TransactionFilterSerializer,
    TransactionSerializer,
)
from fivedocks.errors import NotFound
from fivedocks.throttling import SharedScopedRateThrottle


def _result_body(result: services.CreditResult) -> dict:
    return CreditResultSerializer(
        {"balance": result.balance, "replayed": result.replayed, "transaction": result.transaction}
    ).data


# One serializer for every balance read: a new instance deep-copies its declared fields, which
# cost more than the cached read itself (bench/http_balance.py); `to_representation` keeps no
# state between calls, so threads share it safely.
_BALANCE_SERIALIZER = BalanceSerializer()


class BalanceView(APIView):
    """The caller's balance and totals (served from the per-user cache entry)."""

    @extend_schema(responses=BalanceSerializer)
    def get(self, request: Request) -> Response:
        return Response(_BALANCE_SERIALIZER.to_representation(selectors.get_balance(user_id=request.user.pk)))


class TransactionListView(generics.ListAPIView):
    """The caller's own ledger, newest first; filter by type and date range."""

    serializer_class = TransactionSerializer

    @extend_schema(parameters=[TransactionFilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = TransactionFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        return selectors.transaction_history(
            user_id=self.request.user.pk,
            types=sorted(data["type"]) if data.get("type") else None,
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
        )


class DeductView(APIView):
    """Charge an operation's cost. A retry with the same idempotency key returns the first result."""

    throttle_classes = [SharedScopedRateThrottle]
    throttle_scope = "credits-deduct"

    @extend_schema(
        request=DeductRequestSerializer,
        responses={
            200: CreditResultSerializer,
            400: OpenApiResponse(description="Unknown operation or invalid input"),
            402: OpenApiResponse(description="Not enough credits"),
            409: OpenApiResponse(description="Idempotency key reused for another operation"),
        },
    )
    def post(self, request: Request) -> Response:
        payload = DeductRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        result = services.deduct(
            user=request.user, operation=data["operation"], client_key=data["idempotency_key"]
        )
        return Response(_result_body(result), status=status.HTTP_200_OK)


class GrantView(APIView):
    """Staff with the credits.grant_credits permission: add credits to another user's account.

    Above CREDITS_APPROVAL_THRESHOLD the grant waits for a second staff member (202 + the
    pending change's id); the permission and the rules are checked by credits.services.
    """

    permission_classes = [IsAdminUser]
    throttle_classes = [SharedScopedRateThrottle]
    throttle_scope = "credits-grant"

    @extend_schema(
        request=GrantRequestSerializer,
        responses={
            201: CreditResultSerializer,
            200: OpenApiResponse(CreditResultSerializer, description="A replay of the same idempotency key"),
            202: PendingChangeSerializer,
            403: OpenApiResponse(description="No credits.grant_credits permission, or one's own account"),
            404: OpenApiResponse(description="No user with this id"),
            409: OpenApiResponse(
                description="Idempotency key used for another change, or the balance would pass its maximum"
            ),
        },
    )
    def post(self, request: Request) -> Response:
        payload = GrantRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        user = get_user_model().objects.filter(pk=data["user_id"]).first()
        if user is None:
            raise NotFound(f"No user with id {data['user_id']}.")
        change = services.request_staff_change(
            actor=request.user,
            user=user,
            kind=data["kind"],
            amount=data["amount"],
            reason=data["reason"],
            client_key=data.get("idempotency_key"),
            metadata={"granted_by": request.user.pk},
        )
        if change.pending is not None:
            return Response(PendingChangeSerializer(change.pending).data, status=status.HTTP_202_ACCEPTED)
        result = change.result
        code = status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED
        return Response(_result_body(result), status=code)
