from rest_framework import serializers

from gmail.models import GmailToken


class AuthorizationUrlSerializer(serializers.Serializer):
    authorization_url = serializers.URLField(read_only=True)


class CallbackQuerySerializer(serializers.Serializer):
    state = serializers.CharField(required=False, allow_blank=True)
    code = serializers.CharField(required=False, allow_blank=True)
    error = serializers.CharField(required=False, allow_blank=True)


class GmailStatusSerializer(serializers.Serializer):
    """A connection's state. Built field by field: a token can never slip in."""

    connected = serializers.BooleanField()
    status = serializers.ChoiceField(choices=GmailToken.Status.choices, allow_null=True)
    email = serializers.CharField(allow_blank=True, allow_null=True)
    display_name = serializers.CharField(allow_blank=True, allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    scopes = serializers.ListField(child=serializers.CharField())

    @staticmethod
    def for_connection(token: GmailToken | None) -> dict:
        if token is None:
            return {
                "connected": False,
                "status": None,
                "email": None,
                "display_name": None,
                "expires_at": None,
                "scopes": [],
            }
        return {
            "connected": token.status == GmailToken.Status.ACTIVE,
            "status": token.status,
            "email": token.email,
            "display_name": token.display_name,
            "expires_at": token.expires_at,
            "scopes": list(token.scopes),
        }
