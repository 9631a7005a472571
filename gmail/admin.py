"""Staff view of Gmail connections: read-only; revoking and disconnecting go through services.

Token columns are never loaded here (the queryset defers them, the form excludes them).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from fivedocks.admin import EmailTitleMixin, customer_link
from fivedocks.errors import DomainError
from gmail import selectors, services
from gmail.models import GmailToken

MASK = "•••• (encrypted)"


@admin.register(GmailToken)
class GmailTokenAdmin(EmailTitleMixin, admin.ModelAdmin):
    list_display = (
        "user_email", "email", "display_name", "status", "expires_at", "scope_list", "updated_at", "customer",
    )  # fmt: skip
    list_filter = ("status",)
    search_fields = ("user__email", "email", "display_name")
    list_select_related = ("user",)
    ordering = ("-updated_at",)
    exclude = selectors.TOKEN_FIELDS
    readonly_fields = (
        "user",
        "email",
        "display_name",
        "status",
        "tokens",
        "expires_at",
        "scopes",
        "metadata",
        "created_at",
        "updated_at",
    )
    actions = ("revoke_selected", "disconnect_selected")

    def get_queryset(self, request: HttpRequest) -> QuerySet[GmailToken]:
        return selectors.connections()

    @admin.display(description="user", ordering="user__email")
    def user_email(self, obj: GmailToken) -> str:
        return obj.user.email

    @admin.display(description="")
    def customer(self, obj: GmailToken) -> str:
        return customer_link(obj.user_id)

    @admin.display(description="scopes")
    def scope_list(self, obj: GmailToken) -> str:
        return ", ".join(s.rsplit("/", 1)[-1] for s in obj.scopes)

    @admin.display(description="tokens")
    def tokens(self, obj: GmailToken) -> str:
        return MASK if getattr(obj, "has_tokens", False) else "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # connections are made by users through Google's consent screen

    def has_change_permission(self, request: HttpRequest, obj: GmailToken | None = None) -> bool:
        # The list (obj None) needs it to offer the actions; single rows are never edited.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: GmailToken | None = None) -> bool:
        return False  # deleting without revoking at Google would leave the grant alive

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Revoke at Google and mark revoked (tokens erased)", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[GmailToken]) -> None:
        self._apply(request, queryset, services.revoke_access, "revoked")

    @admin.action(description="Disconnect: revoke at Google and delete", permissions=["change"])
    def disconnect_selected(self, request: HttpRequest, queryset: QuerySet[GmailToken]) -> None:
        self._apply(request, queryset, services.disconnect, "disconnected")

    def _apply(self, request: HttpRequest, queryset: QuerySet[GmailToken], service, verb: str) -> None:
        done = 0
        for token in queryset.select_related("user"):
            try:
                service(user=token.user)
            except DomainError as exc:
                self.message_user(request, f"{token.user.email}: {exc.message}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} connection(s) {verb}.", messages.SUCCESS)
