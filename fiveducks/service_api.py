"""The service API the platform's backend calls: credit holds and charges, Gmail access tokens.

Every view authenticates a service client only (`Authorization: Bearer fd_svc_...`), checks the
scope it needs, and leaves one audit row (client, user, action, result) whatever the outcome.
Holds and idempotency keys are namespaced per client (`svc:<client id>:`), apart from the keys
of users and of the system (`monthly-allowance:`, `easter-egg:`, `stripe-invoice:`...).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from credits import selectors as credit_selectors
from credits import services as credits
from fivedocks import request_context
from fivedocks.errors import Conflict, DomainError, NotFound
from fivedocks.metrics import SERVICE_CALLS
from fiveducks import services
from fiveducks.authentication import IsServiceClient, ServiceClientAuthentication
from fiveducks.first_sight import find_or_import_user
from fiveducks.service_serializers import (
    MAX_ID,
    AccessTokenRequestSerializer,
    AccessTokenSerializer,
    CaptureRequestSerializer,
    CaptureSerializer,
    ChargeRequestSerializer,
    ChargeSerializer,
    HoldRequestSerializer,
    HoldSerializer,
)
from gmail import services as gmail
from gmail.errors import GmailNotConnected


class UnknownUser(NotFound):
    """Neither fivedocks nor the platform knows this user id."""

    code = "user_not_found"


class GmailConnectionRequired(Conflict):
    """The user has not connected Gmail: they must connect it (GET /api/gmail/connect/)."""

    code = "gmail_not_connected"


class ServiceView(APIView):
    """A service API endpoint: service credentials, one scope, one audit row per call."""

    authentication_classes = [ServiceClientAuthentication]
    permission_classes = [IsServiceClient]
    required_scope: str = ""
    action_name: str = ""

    def initial(self, request, *args, **kwargs):
        self.audit_user_id: int | None = None
        self.audit_detail: dict = {}
        super().initial(request, *args, **kwargs)

    def user_for(self, user_id: int):
        self.audit_user_id = user_id
        user = find_or_import_user(user_id=user_id)
        if user is None:
            raise UnknownUser(f"No user with id {user_id}, here or on the platform.")
        return user

    def check_hold_id(self, hold_id: int) -> None:
        self.audit_detail = {"hold_id": hold_id}
        if hold_id > MAX_ID:
            raise credits.HoldNotFound(f"No hold {hold_id}.")

    def key(self, request: Request, idempotency_key: str) -> str:
        return f"{request.auth.owner}:{idempotency_key}"

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        client = getattr(request, "auth", None)
        if client is not None and hasattr(client, "owner"):
            data = response.data if isinstance(response.data, dict) else {}
            result = "ok" if response.status_code < 400 else str(data.get("code", "error"))
            services.record_call(
                client=client,
                user_id=getattr(self, "audit_user_id", None),
                action=self.action_name,
                status=response.status_code,
                result=result,
                detail=getattr(self, "audit_detail", {}),
                request_id=request_context.request_id.get() or "",
            )
            SERVICE_CALLS.labels(client.name, self.action_name, str(response.status_code)).inc()
        return response


_SEQUENCE = """
The platform's backend charges a billable action in three calls:

1. `POST /api/service/credits/holds/` `{"user_id": 42, "operation": "email_search",
   "idempotency_key": "search-8f3a"}` → 201 `{"hold_id": 7, "available": 90, ...}`, or 402 when
   the available credits (balance minus open holds) are short: do not run the action.
2. Run the action (the search).
3. On success `POST /api/service/credits/holds/7/capture/` (optionally `{"amount": 120}` to charge
   less than held); on failure `POST /api/service/credits/holds/7/release/`. A hold never
   settled expires (15 minutes by default) and its credits come back by themselves.
"""


class HoldCreateView(ServiceView):
    required_scope = "credits:charge"
    action_name = "credits.hold"

    @extend_schema(
        summary="Reserve credits for a billable action",
        description=_SEQUENCE,
        request=HoldRequestSerializer,
        responses={
            201: HoldSerializer,
            200: OpenApiResponse(HoldSerializer, description="A replayed idempotency key: the first hold"),
            402: OpenApiResponse(description="The available credits are short"),
            404: OpenApiResponse(description="Unknown user"),
            409: OpenApiResponse(description="The idempotency key was used for another hold"),
        },
        examples=[
            OpenApiExample(
                "Hold an operation's cost",
                value={"user_id": 42, "operation": "email_search", "idempotency_key": "search-8f3a"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        payload = HoldRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        user = self.user_for(data["user_id"])
        result = credits.open_hold(
            user=user,
            amount=data.get("amount"),
            operation=data.get("operation"),
            idempotency_key=self.key(request, data["idempotency_key"]),
            ttl_seconds=data.get("ttl_seconds"),
            owner=request.auth.owner,
            metadata={"client": request.auth.name},
        )
        self.audit_detail = {"hold_id": result.hold.pk, "amount": result.hold.amount}
        code = status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED
        return Response(HoldSerializer(result).data, status=code)


class HoldCaptureView(ServiceView):
    required_scope = "credits:charge"
    action_name = "credits.capture"

    @extend_schema(
        summary="Charge a hold (all of it, or less)",
        request=CaptureRequestSerializer,
        responses={
            200: CaptureSerializer,
            400: OpenApiResponse(description="More than the held amount"),
            404: OpenApiResponse(description="No such hold for this client"),
            409: OpenApiResponse(
                description="`hold_released`, `hold_expired`, or `hold_captured` (another amount)"
            ),
        },
    )
    def post(self, request: Request, hold_id: int) -> Response:
        self.check_hold_id(hold_id)
        payload = CaptureRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            result = credits.capture_hold(
                hold_id=hold_id, owner=request.auth.owner, amount=payload.validated_data.get("amount")
            )
        except DomainError:
            self.audit_user_id = _hold_user(hold_id, request.auth.owner)
            raise
        self.audit_user_id = result.hold.user_id
        self.audit_detail["captured"] = result.hold.captured_amount
        snapshot = credit_selectors.get_balance(user_id=result.hold.user_id)
        body = {
            "hold_id": hold_id,
            "captured": result.hold.captured_amount,
            "balance": snapshot.balance,
            "available": snapshot.available,
            "replayed": result.replayed,
            "transaction": result.transaction,
        }
        return Response(CaptureSerializer(body).data)


class HoldReleaseView(ServiceView):
    required_scope = "credits:charge"
    action_name = "credits.release"

    @extend_schema(
        summary="Give a hold's credits back",
        request=None,
        responses={
            200: HoldSerializer,
            404: OpenApiResponse(description="No such hold for this client"),
            409: OpenApiResponse(description="`hold_captured` or `hold_expired`"),
        },
    )
    def post(self, request: Request, hold_id: int) -> Response:
        self.check_hold_id(hold_id)
        try:
            result = credits.release_hold(hold_id=hold_id, owner=request.auth.owner)
        except DomainError:
            self.audit_user_id = _hold_user(hold_id, request.auth.owner)
            raise
        self.audit_user_id = result.hold.user_id
        return Response(HoldSerializer(result).data)


def _hold_user(hold_id: int, owner: str) -> int | None:
    hold = credit_selectors.holds().filter(pk=hold_id, owner=owner).only("user_id").first()
    return hold.user_id if hold else None


class ChargeView(ServiceView):
    required_scope = "credits:charge"
    action_name = "credits.charge"

    @extend_schema(
        summary="Charge an operation in one step (the same rules as the user's own deduct)",
        request=ChargeRequestSerializer,
        responses={
            200: ChargeSerializer,
            402: OpenApiResponse(description="The available credits are short"),
            404: OpenApiResponse(description="Unknown user"),
            409: OpenApiResponse(description="The idempotency key was used for another change"),
        },
    )
    def post(self, request: Request) -> Response:
        payload = ChargeRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        user = self.user_for(data["user_id"])
        result = credits.deduct(
            user=user,
            operation=data["operation"],
            idempotency_key=self.key(request, data["idempotency_key"]),
            metadata={"client": request.auth.name},
        )
        self.audit_detail = {"transaction_id": result.transaction.pk, "amount": result.transaction.amount}
        snapshot = credit_selectors.get_balance(user_id=user.pk)
        body = {
            "balance": result.balance,
            "available": result.balance - snapshot.held if not result.replayed else snapshot.available,
            "replayed": result.replayed,
            "transaction": result.transaction,
        }
        return Response(ChargeSerializer(body).data)


class GmailAccessTokenView(ServiceView):
    required_scope = "gmail:token"
    action_name = "gmail.access_token"

    @extend_schema(
        summary="A fresh Gmail access token for a user (refreshed at most once however many ask)",
        request=AccessTokenRequestSerializer,
        responses={
            200: AccessTokenSerializer,
            404: OpenApiResponse(description="Unknown user"),
            409: OpenApiResponse(
                description="`gmail_not_connected` or `gmail_reconnect_required`: (re)connect Gmail"
            ),
            502: OpenApiResponse(description="Google refused or could not be reached"),
        },
    )
    def post(self, request: Request) -> Response:
        payload = AccessTokenRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        user = self.user_for(payload.validated_data["user_id"])
        try:
            token = gmail.fresh_token(user=user)
        except GmailNotConnected:
            raise GmailConnectionRequired(
                f"User {user.pk} has not connected Gmail: they must connect it first."
            ) from None
        self.audit_detail = {"expires_at": token.expires_at.isoformat()}
        body = {"access_token": token.access_token, "expires_at": token.expires_at, "email": token.email}
        response = Response(AccessTokenSerializer(body).data)
        response["Cache-Control"] = "no-store"
        return response
