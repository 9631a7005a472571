from rest_framework import serializers

from accounts.models import User


class MeSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ("id", "email", "username", "firebase_uid", "is_staff", "date_joined")
        read_only_fields = fields


class TokenRequestSerializer(serializers.Serializer):
    """Only needed when the caller is not already signed in (session or an API token)."""

    email = serializers.EmailField(required=False)
    password = serializers.CharField(required=False, trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="The API key. Shown this once: only its SHA-256 is stored.")
