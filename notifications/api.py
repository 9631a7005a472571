from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from notifications import catalogue, selectors, services
from notifications.serializers import (
    EasterEggClaimInputSerializer,
    EasterEggClaimSerializer,
    FlagSerializer,
    UserFlagsSerializer,
)

_ERROR = OpenApiResponse(description='Error body: {"status", "code", "detail", "fields"?}')


def _flag(row) -> dict:
    return {"id": row.notification_id, "name": row.name, "shown_at": row.shown_at}


class UserFlagsView(APIView):
    """The caller's shown notifications, awarded badges and claimed easter eggs."""

    @extend_schema(operation_id="notifications_list", responses=UserFlagsSerializer)
    def get(self, request: Request) -> Response:
        flags = selectors.user_flags(user_id=request.user.pk)
        return Response(UserFlagsSerializer(flags).data)


class MarkShownView(APIView):
    """Record that the caller saw notification `id`: 201 the first time, 200 after."""

    @extend_schema(
        operation_id="notifications_mark_shown",
        parameters=[
            OpenApiParameter(
                "notification_id",
                int,
                OpenApiParameter.PATH,
                enum=[entry.id for entry in catalogue.NOTIFICATIONS],
                description="A notification of the catalogue; any other id answers 404.",
            )
        ],
        request=None,
        responses={201: FlagSerializer, 200: FlagSerializer, 404: _ERROR},
    )
    def post(self, request: Request, notification_id: int) -> Response:
        row, created = services.mark_shown(user=request.user, notification_id=notification_id)
        return Response(
            FlagSerializer(_flag(row)).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class EasterEggClaimView(APIView):
    """Claim an easter egg by its phrase; its credits are granted once per user."""

    @extend_schema(
        operation_id="notifications_easter_egg_claim",
        request=EasterEggClaimInputSerializer,
        responses={201: EasterEggClaimSerializer, 400: _ERROR, 404: _ERROR, 409: _ERROR},
    )
    def post(self, request: Request) -> Response:
        payload = EasterEggClaimInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        row, credit = services.claim_easter_egg(user=request.user, phrase=payload.validated_data["phrase"])
        body = {"egg": _flag(row), "credits_granted": credit.transaction.amount, "balance": credit.balance}
        return Response(EasterEggClaimSerializer(body).data, status=status.HTTP_201_CREATED)
