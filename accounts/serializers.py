from rest_framework import serializers

from accounts.models import User


class MeSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ("id", "email", "username", "firebase_uid", "is_staff", "date_joined")
        read_only_fields = fields
