from rest_framework import serializers


class FlagSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The catalogue id (the legacy KV array index).")
    name = serializers.CharField()
    shown_at = serializers.DateTimeField()


class UserFlagsSerializer(serializers.Serializer):
    notifications = FlagSerializer(many=True)
    badges = FlagSerializer(many=True)
    easter_eggs = FlagSerializer(many=True)


class EasterEggClaimInputSerializer(serializers.Serializer):
    phrase = serializers.CharField(max_length=200, help_text="Matched case-insensitively, trimmed.")


class EasterEggClaimSerializer(serializers.Serializer):
    egg = FlagSerializer()
    credits_granted = serializers.IntegerField()
    balance = serializers.IntegerField(help_text="The credit balance after the grant.")
