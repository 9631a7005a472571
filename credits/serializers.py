from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from credits.models import CreditTransaction, PendingCreditChange
from credits.services import MAX_CHANGE, MAX_CLIENT_KEY_LENGTH


class BalanceSerializer(serializers.Serializer):
    balance = serializers.IntegerField()
    available = serializers.IntegerField(
        help_text="The balance minus credits held for actions in progress (open, unexpired holds)."
    )
    held = serializers.IntegerField(help_text="Credits held by open, unexpired holds.")
    total_purchased = serializers.IntegerField()
    total_used = serializers.IntegerField()
    is_blocked = serializers.BooleanField()
    last_updated = serializers.DateTimeField(allow_null=True)


class TransactionSerializer(serializers.ModelSerializer):
    class Meta:
        model = CreditTransaction
        fields = ("id", "amount", "type", "reason", "balance_after", "metadata", "created_at")
        read_only_fields = fields


class TransactionFilterSerializer(serializers.Serializer):
    type = serializers.MultipleChoiceField(choices=CreditTransaction.Type.choices, required=False)
    created_from = serializers.DateTimeField(required=False)
    created_to = serializers.DateTimeField(required=False)

    def validate(self, attrs):
        start, end = attrs.get("created_from"), attrs.get("created_to")
        if start and end and start >= end:
            raise serializers.ValidationError("created_from must be before created_to.")
        return attrs


@extend_schema_field({"type": "string", "enum": sorted(settings.CREDIT_OPERATION_COSTS)})
class OperationField(serializers.CharField):
    """Documented as the enum of priced operations; checked by the service, which answers an
    unknown one with 400 `unknown_operation` (so clients get that code, not a generic one)."""


class DeductRequestSerializer(serializers.Serializer):
    operation = OperationField(
        max_length=64, help_text=f"One of: {', '.join(sorted(settings.CREDIT_OPERATION_COSTS))}"
    )
    idempotency_key = serializers.CharField(
        max_length=MAX_CLIENT_KEY_LENGTH,
        help_text="Unique per user; a retry with the same key returns the first result.",
    )


class CreditResultSerializer(serializers.Serializer):
    balance = serializers.IntegerField()
    replayed = serializers.BooleanField()
    transaction = TransactionSerializer()


class GrantRequestSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    amount = serializers.IntegerField(min_value=1, max_value=MAX_CHANGE)
    kind = serializers.ChoiceField(
        choices=[
            CreditTransaction.Type.PURCHASE,
            CreditTransaction.Type.BONUS,
            CreditTransaction.Type.ALLOWANCE,
        ],
        default=CreditTransaction.Type.BONUS,
    )
    reason = serializers.CharField(max_length=500)
    idempotency_key = serializers.CharField(max_length=MAX_CLIENT_KEY_LENGTH, required=False)


class PendingChangeSerializer(serializers.ModelSerializer):
    """A staff change above the approval threshold, waiting for a second staff member."""

    kind = serializers.CharField(read_only=True, help_text="purchase, bonus, allowance or adjustment")

    class Meta:
        model = PendingCreditChange
        fields = ("id", "user", "amount", "kind", "reason", "status", "requested_by", "requested_at")
        read_only_fields = fields
