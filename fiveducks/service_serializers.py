"""Request and response bodies of the service API (`/api/service/...`)."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from credits.serializers import OperationField, TransactionSerializer
from credits.services import MAX_CHANGE

MAX_ID = 2**63 - 1  # ids are PostgreSQL bigints: past this, a clear 400 rather than a database error


class HoldRequestSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    operation = OperationField(max_length=64, required=False, help_text="Hold this operation's cost...")
    amount = serializers.IntegerField(
        min_value=1, max_value=MAX_CHANGE, required=False, help_text="...or this."
    )
    idempotency_key = serializers.CharField(
        max_length=200, help_text="Unique per user and client; a replay returns the first hold."
    )
    ttl_seconds = serializers.IntegerField(
        min_value=1,
        max_value=settings.CREDIT_HOLD_MAX_TTL_SECONDS,
        required=False,
        help_text=f"Default {settings.CREDIT_HOLD_TTL_SECONDS} s; an unsettled hold then expires.",
    )

    def validate(self, attrs):
        if ("operation" in attrs) == ("amount" in attrs):
            raise serializers.ValidationError("Give either an operation or an amount.")
        return attrs


class HoldSerializer(serializers.Serializer):
    hold_id = serializers.IntegerField(source="hold.pk")
    user_id = serializers.IntegerField(source="hold.user_id")
    amount = serializers.IntegerField(source="hold.amount")
    operation = serializers.CharField(source="hold.operation")
    status = serializers.SerializerMethodField(help_text="open, expired, captured or released")
    expires_at = serializers.DateTimeField(source="hold.expires_at")
    balance = serializers.IntegerField()
    available = serializers.IntegerField()
    replayed = serializers.BooleanField()

    def get_status(self, result) -> str:
        return "expired" if result.hold.is_expired() else result.hold.status


class CaptureRequestSerializer(serializers.Serializer):
    amount = serializers.IntegerField(
        min_value=1,
        max_value=MAX_CHANGE,
        required=False,
        help_text="At most the held amount; all of it by default.",
    )


class CaptureSerializer(serializers.Serializer):
    hold_id = serializers.IntegerField()
    captured = serializers.IntegerField()
    balance = serializers.IntegerField()
    available = serializers.IntegerField()
    replayed = serializers.BooleanField()
    transaction = TransactionSerializer()


class ChargeRequestSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    operation = OperationField(max_length=64)
    idempotency_key = serializers.CharField(max_length=200)


class ChargeSerializer(serializers.Serializer):
    balance = serializers.IntegerField()
    available = serializers.IntegerField()
    replayed = serializers.BooleanField()
    transaction = TransactionSerializer()


class AccessTokenRequestSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)


class AccessTokenSerializer(serializers.Serializer):
    access_token = serializers.CharField()
    expires_at = serializers.DateTimeField()
    email = serializers.CharField()
