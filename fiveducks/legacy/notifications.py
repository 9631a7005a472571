"""Notifications, badges and easter eggs at the platform's paths (its 401 body B)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from fiveducks import first_sight
from fiveducks.legacy.base import AUTH_B, LegacyView, common_errors
from notifications import catalogue, selectors, services
from notifications.catalogue import Kind

TAG = ["platform: notifications"]

# What the platform's client shows for each entry (its config objects carry these); the
# behaviour (ids, triggers, rewards) is notifications.catalogue's. Titles and emoji are
# presentation only and were not recorded in the KV data: docs/platform.md says so.
_PRESENTATION: dict[tuple[str, int], dict] = {
    (Kind.BADGE, 0): {"title": "Hatchling", "badge": "Hatchling", "emoji": "🐣", "buttonText": "Quack on!"},
    (Kind.NOTIFICATION, 1): {"title": "You're on the waitlist", "emoji": "🦆", "buttonText": "Got it"},
    (Kind.NOTIFICATION, 2): {"title": "Search tips", "emoji": "🔍", "buttonText": "Got it"},
    (Kind.NOTIFICATION, 3): {"title": "Email tips", "emoji": "✉️", "buttonText": "Got it"},
    (Kind.NOTIFICATION, 4): {"title": "Start selling", "emoji": "🚀", "buttonText": "Got it"},
}
_EGG_EMOJI = {0: "🦆", 1: "🕊️", 2: "✝️"}


def config(entry: catalogue.Entry) -> dict:
    shown = _PRESENTATION.get((entry.kind, entry.id), {})
    return {
        "id": entry.id,
        "type": entry.kind,
        "trigger": entry.name,
        "title": shown.get("title", entry.name),
        "description": entry.description,
        "badge": shown.get("badge"),
        "emoji": shown.get("emoji", ""),
        "buttonText": shown.get("buttonText", "OK"),
    }


def flag_array(ids: list[int]) -> list[int | None]:
    """The KV store's array: index = id, 1 = done, holes null (as JSON.stringify wrote them)."""
    if not ids:
        return []
    array: list[int | None] = [None] * (max(ids) + 1)
    for flag_id in ids:
        array[flag_id] = 1
    return array


class ConfigSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.CharField()
    trigger = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    badge = serializers.CharField(allow_null=True)
    emoji = serializers.CharField(allow_blank=True)
    buttonText = serializers.CharField()

    class Meta:
        ref_name = "LegacyNotificationConfig"


class StatusSerializer(serializers.Serializer):
    notifications = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    badges = serializers.ListField(child=serializers.IntegerField(allow_null=True))
    isWaitlistMember = serializers.BooleanField()

    class Meta:
        ref_name = "LegacyNotificationStatus"


class TriggerRequestSerializer(serializers.Serializer):
    trigger = serializers.CharField()

    class Meta:
        ref_name = "LegacyTriggerRequest"


class TriggerSerializer(serializers.Serializer):
    shouldShow = serializers.BooleanField()
    badge = ConfigSerializer(required=False)
    notification = ConfigSerializer(required=False)

    class Meta:
        ref_name = "LegacyTrigger"


class NotShownSerializer(serializers.Serializer):
    shouldShow = serializers.BooleanField()
    message = serializers.CharField()

    class Meta:
        ref_name = "LegacyTriggerNotShown"


class MarkShownRequestSerializer(serializers.Serializer):
    badgeId = serializers.IntegerField(required=False)
    notificationId = serializers.IntegerField(required=False)

    class Meta:
        ref_name = "LegacyMarkShownRequest"


class SuccessSerializer(serializers.Serializer):
    success = serializers.BooleanField()

    class Meta:
        ref_name = "LegacySuccess"


class EggRequestSerializer(serializers.Serializer):
    query = serializers.CharField()

    class Meta:
        ref_name = "LegacyEasterEggRequest"


class EggSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    trigger = serializers.CharField()
    reward = serializers.IntegerField()
    description = serializers.CharField()
    emoji = serializers.CharField()

    class Meta:
        ref_name = "LegacyEasterEgg"


class EggClaimSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()
    newBalance = serializers.IntegerField(required=False)
    easterEgg = EggSerializer(required=False)

    class Meta:
        ref_name = "LegacyEasterEggClaim"


def _int_field(data: dict, name: str) -> int | None:
    value = data.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class NotificationStatusView(LegacyView):
    """GET /api/notifications/status: shown notifications and badges as the KV arrays."""

    unauthenticated_body = AUTH_B

    @extend_schema(tags=TAG, responses={200: StatusSerializer, **common_errors(AUTH_B)})
    def get(self, request: Request) -> Response:
        first_sight.ensure_welcome(user=request.user)  # the platform's lazy creation
        flags = selectors.user_flags(user_id=request.user.pk)
        notifications = [flag.id for flag in flags.notifications]
        return Response(
            {
                "notifications": flag_array(notifications),
                "badges": flag_array([flag.id for flag in flags.badges]),
                # The platform's test is `notifications.includes(1)`: any notification shown.
                "isWaitlistMember": bool(notifications),
            }
        )


class TriggerView(LegacyView):
    """POST /api/notifications/trigger: whether a notification or badge should show (read-only)."""

    unauthenticated_body = AUTH_B

    @extend_schema(
        tags=TAG,
        request=TriggerRequestSerializer,
        responses={
            200: TriggerSerializer,
            409: OpenApiResponse(NotShownSerializer, description="Already shown, or no such trigger"),
            **common_errors(AUTH_B, unsafe=True),
        },
    )
    def post(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        trigger = data.get("trigger")
        if not isinstance(trigger, str) or not trigger:
            return Response({"message": "Notification trigger failed: a trigger is required"}, status=400)
        for kind, key in ((Kind.BADGE, "badge"), (Kind.NOTIFICATION, "notification")):
            entry = next((e for e in catalogue.entries(kind) if e.name == trigger), None)
            if entry is None:
                continue
            if selectors.has_flag(user_id=request.user.pk, kind=kind, notification_id=entry.id):
                break
            return Response({"shouldShow": True, key: config(entry)})
        return Response(
            {"shouldShow": False, "message": "Notification already shown or not found"}, status=409
        )


class MarkShownView(LegacyView):
    """POST /api/notifications/mark-shown: `{badgeId}` or `{notificationId}` (the badge wins)."""

    unauthenticated_body = AUTH_B

    @extend_schema(
        tags=TAG,
        request=MarkShownRequestSerializer,
        responses={200: SuccessSerializer, **common_errors(AUTH_B, unsafe=True)},
    )
    def post(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        badge_id, notification_id = _int_field(data, "badgeId"), _int_field(data, "notificationId")
        if badge_id is not None:
            kind, flag_id = Kind.BADGE, badge_id
        elif notification_id is not None:
            kind, flag_id = Kind.NOTIFICATION, notification_id
        else:
            return Response({"message": "Either notificationId or badgeId is required"}, status=400)
        if catalogue.get(kind, flag_id) is None:
            return Response({"message": f"Unknown {kind} id {flag_id}"}, status=400)
        services.mark_shown(user=request.user, notification_id=flag_id, kind=kind)
        return Response({"success": True})


class EasterEggView(LegacyView):
    """POST /api/credits/easter-egg: claim the egg whose phrase is `query`, once, for its credits."""

    unauthenticated_body = AUTH_B

    @extend_schema(
        tags=["platform: credits"],
        request=EggRequestSerializer,
        responses={
            200: EggClaimSerializer,
            409: OpenApiResponse(EggClaimSerializer, description="Invalid easter egg, or already claimed"),
            **common_errors(AUTH_B, unsafe=True),
        },
    )
    def post(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        query = data.get("query")
        if not isinstance(query, str):
            return Response({"message": "Easter egg claim failed: a query is required"}, status=400)
        first_sight.ensure_welcome(user=request.user)
        try:
            _, result = services.claim_easter_egg(user=request.user, phrase=query)
        except services.UnknownEasterEgg:
            return Response({"success": False, "message": "Invalid easter egg"}, status=409)
        except services.AlreadyClaimed:
            return Response({"success": False, "message": "Easter egg already claimed!"}, status=409)
        egg = catalogue.egg_for_phrase(query)
        return Response(
            {
                "success": True,
                "message": f"🎉 Easter egg found! +{egg.reward} credits added!",
                "newBalance": result.balance,
                "easterEgg": {
                    "id": egg.id,
                    "trigger": egg.phrase,
                    "reward": egg.reward,
                    "description": egg.description,
                    "emoji": _EGG_EMOJI.get(egg.id, "🥚"),
                },
            }
        )
