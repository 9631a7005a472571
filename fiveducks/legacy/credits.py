"""Credits at the platform's paths: balance, history, stats, status, and the client's own charge."""

from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing import selectors as billing_selectors
from credits import selectors, services
from fiveducks import first_sight
from fiveducks.legacy import shapes
from fiveducks.legacy.base import AUTH_A, LegacyView, common_errors, message

TAG = ["platform: credits"]
# The searches the client may charge an individual email for (the platform's list).
SEARCH_TYPES = ("apollo", "hunter", "perplexity", "comprehensive")
INDIVIDUAL_EMAIL = "individual_email"
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")


class BalanceSerializer(serializers.Serializer):
    balance = serializers.IntegerField()
    isBlocked = serializers.BooleanField()
    lastTopUp = serializers.IntegerField(allow_null=True, help_text="epoch ms")
    totalUsed = serializers.IntegerField()
    monthlyAllowance = serializers.IntegerField()

    class Meta:
        ref_name = "LegacyCredits"


class TransactionSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["debit", "credit"])
    amount = serializers.IntegerField(min_value=0)
    description = serializers.CharField(allow_blank=True)
    timestamp = serializers.IntegerField(help_text="epoch ms")
    searchType = serializers.CharField(required=False, allow_null=True)
    success = serializers.BooleanField(required=False, allow_null=True)

    class Meta:
        ref_name = "LegacyTransaction"


class StatsSerializer(serializers.Serializer):
    totalUsed = serializers.IntegerField()
    thisMonth = serializers.IntegerField()
    searchCounts = serializers.DictField(child=serializers.IntegerField())

    class Meta:
        ref_name = "LegacyCreditStats"


class StatusSerializer(serializers.Serializer):
    isBlocked = serializers.BooleanField()

    class Meta:
        ref_name = "LegacyCreditStatus"


class DeductRequestSerializer(serializers.Serializer):
    contactId = serializers.JSONField(help_text="The contact charged for (a number or a string).")
    searchType = serializers.CharField(help_text=f"One of {', '.join(SEARCH_TYPES)}.")
    emailFound = serializers.BooleanField()

    class Meta:
        ref_name = "LegacyDeductIndividualEmailRequest"


class DeductResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    charged = serializers.BooleanField()
    message = serializers.CharField(required=False)
    newBalance = serializers.IntegerField(required=False)
    isBlocked = serializers.BooleanField(required=False)
    transaction = TransactionSerializer(required=False)
    searchType = serializers.CharField(required=False)
    contactId = serializers.JSONField(required=False)

    class Meta:
        ref_name = "LegacyDeductIndividualEmail"


class InsufficientSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    charged = serializers.BooleanField()
    message = serializers.CharField()
    balance = serializers.IntegerField()
    required = serializers.IntegerField()

    class Meta:
        ref_name = "LegacyInsufficientCredits"


def _balance_body(user) -> dict:
    first_sight.ensure_welcome(user=user)
    snapshot = selectors.get_balance(user_id=user.pk)
    account = selectors.account_details(user_id=user.pk)
    allowance = account.monthly_allowance if account is not None else None
    if allowance is None:
        allowance = billing_selectors.subscription_summary(user=user)["monthly_credits"]
    last_top_up = (account.last_top_up or account.created_at) if account is not None else None
    return {
        "balance": snapshot.balance,
        "isBlocked": snapshot.is_blocked,
        "lastTopUp": shapes.ms(last_top_up),
        "totalUsed": snapshot.total_used,
        "monthlyAllowance": allowance,
    }


class CreditsView(LegacyView):
    """GET /api/credits: the balance (a first read opens the account with the welcome credits)."""

    @extend_schema(tags=TAG, responses={200: BalanceSerializer, **common_errors(AUTH_A)})
    def get(self, request: Request) -> Response:
        return Response(_balance_body(request.user))


class HistoryView(LegacyView):
    """GET /api/credits/history?limit=N: transactions, newest first (limit 0 or not a number: 50)."""

    DEFAULT_LIMIT = 50
    MAX_LIMIT = 1000

    @extend_schema(
        tags=TAG,
        parameters=[OpenApiParameter("limit", str, description="How many (default 50)")],
        responses={200: TransactionSerializer(many=True), **common_errors(AUTH_A)},
    )
    def get(self, request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", ""))
        except ValueError:
            limit = 0
        limit = min(limit, self.MAX_LIMIT) if limit > 0 else self.DEFAULT_LIMIT
        first_sight.ensure_welcome(user=request.user)
        entries = selectors.transaction_history(user_id=request.user.pk)[:limit]
        return Response([shapes.transaction(entry) for entry in entries])


class StatsView(LegacyView):
    """GET /api/credits/stats: total used, used this month (UTC), charges per search type."""

    @extend_schema(tags=TAG, responses={200: StatsSerializer, **common_errors(AUTH_A)})
    def get(self, request: Request) -> Response:
        first_sight.ensure_welcome(user=request.user)
        month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        this_month, counts = selectors.usage_since(user_id=request.user.pk, since=month_start)
        snapshot = selectors.get_balance(user_id=request.user.pk)
        return Response({"totalUsed": snapshot.total_used, "thisMonth": this_month, "searchCounts": counts})


class StatusView(LegacyView):
    """GET /api/credits/status: whether the account is blocked."""

    @extend_schema(tags=TAG, responses={200: StatusSerializer, **common_errors(AUTH_A)})
    def get(self, request: Request) -> Response:
        first_sight.ensure_welcome(user=request.user)
        return Response({"isBlocked": selectors.get_balance(user_id=request.user.pk).is_blocked})


class AdjustView(LegacyView):
    """POST /api/credits/adjust: not carried over (it let any user change their own balance)."""

    @extend_schema(
        tags=TAG,
        request=None,
        responses={
            403: message("Always: balances change through charges, grants and staff adjustments"),
            401: common_errors(AUTH_A)[401],
        },
    )
    def post(self, request: Request) -> Response:
        return Response(
            {
                "message": "Adjusting your own credit balance is not available. Credits change "
                "through searches, purchases and staff adjustments."
            },
            status=403,
        )


class DeductIndividualEmailView(LegacyView):
    """POST /api/credits/deduct-individual-email: the client's charge for an email it found.

    Charged through the credit service with the key (user, contact, search type, UTC day), so a
    retried request is charged once. Nothing is charged when the credits are short (402).
    """

    @extend_schema(
        tags=TAG,
        request=DeductRequestSerializer,
        responses={
            200: DeductResultSerializer,
            402: OpenApiResponse(InsufficientSerializer, description="Not enough credits: nothing charged"),
            409: message("The charge's key is in use by a concurrent request; retry"),
            **common_errors(AUTH_A, unsafe=True),
        },
    )
    def post(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        contact_id = data.get("contactId")
        search_type = data.get("searchType")
        email_found = data.get("emailFound")
        usable_contact = isinstance(contact_id, str | int) and not isinstance(contact_id, bool) and contact_id
        if not usable_contact or not isinstance(email_found, bool) or not isinstance(search_type, str | None):
            return Response({"message": "Missing required parameters"}, status=400)
        if not email_found:
            return Response(
                {"success": True, "charged": False, "message": "No email found - no credits deducted"}
            )
        if search_type not in SEARCH_TYPES:
            return Response({"message": "Invalid search type"}, status=400)
        day = timezone.now().date().isoformat()
        contact = str(contact_id)
        if not _PLAIN_ID.fullmatch(contact):  # long or odd ids (NUL, spaces) key by their hash
            contact = "sha256:" + hashlib.sha256(contact.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        try:
            result = services.deduct(
                user=request.user,
                operation=INDIVIDUAL_EMAIL,
                idempotency_key=f"deduct-individual-email:{contact}:{search_type}:{day}",
                metadata={"searchType": search_type, "contactId": contact, "success": True},
            )
        except services.InsufficientCredits:
            balance = selectors.balance_from_database(user_id=request.user.pk).balance
            return Response(
                {
                    "success": False,
                    "charged": False,
                    "message": "Insufficient credits for individual email search",
                    "balance": balance,
                    "required": settings.CREDIT_OPERATION_COSTS[INDIVIDUAL_EMAIL],
                },
                status=402,
            )
        return Response(
            {
                "success": True,
                "charged": True,
                "newBalance": result.balance,
                "isBlocked": result.balance < 0,
                "transaction": shapes.transaction(result.transaction),
                "searchType": search_type,
                "contactId": contact_id,
            }
        )
