"""Service clients in the admin, for staff holding `fiveducks.manage_service_clients` only.

Changes go through fiveducks.services; a new secret (on add, or the rotate action) is shown once
on its own page, never put in a message (messages may travel in a cookie).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from fivedocks.admin import ReadOnlyAdminMixin
from fivedocks.errors import DomainError
from fiveducks import services
from fiveducks.models import SCOPES, ServiceCall, ServiceClient

PERMISSION = "fiveducks.manage_service_clients"


def _allowed(request) -> bool:
    user = request.user
    return user.is_active and user.is_staff and user.has_perm(PERMISSION)


class ServiceClientForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(scope, f"{scope}: {text}") for scope, text in sorted(SCOPES.items())],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ServiceClient
        fields = ("name", "scopes", "is_disabled")


def _secret_page(request, issued: services.IssuedSecret, what: str) -> TemplateResponse:
    context = {
        **admin.site.each_context(request),
        "title": f"New secret for {issued.client.name}",
        "client": issued.client,
        "key_id": issued.secret.key_id,
        "token": issued.token,
        "what": what,
    }
    response = TemplateResponse(request, "admin/fiveducks/secret_once.html", context)
    response["Cache-Control"] = "no-store"
    return response


@admin.register(ServiceClient)
class ServiceClientAdmin(admin.ModelAdmin):
    form = ServiceClientForm
    list_display = ("name", "scope_list", "is_disabled", "live_secrets", "last_used_at", "created_at")
    list_filter = ("is_disabled",)
    search_fields = ("name",)
    actions = ["rotate_secret", "revoke_old_secrets", "disable", "enable"]

    def has_module_permission(self, request) -> bool:
        return _allowed(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return _allowed(request)

    def has_add_permission(self, request) -> bool:
        return _allowed(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return _allowed(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # disable instead: the audit log keeps referring to the client

    def get_readonly_fields(self, request, obj=None):
        return ("name", "last_used_at", "created_at") if obj else ()

    @admin.display(description="scopes")
    def scope_list(self, obj: ServiceClient) -> str:
        return ", ".join(obj.scopes)

    @admin.display(description="live secrets")
    def live_secrets(self, obj: ServiceClient) -> int:
        return obj.secrets.filter(revoked_at__isnull=True).count()

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        if not change:
            issued = services.create_client(name=data["name"], scopes=data["scopes"])
            if data.get("is_disabled"):
                services.set_disabled(name=data["name"], disabled=True)
            obj.pk = issued.client.pk
            obj._state.adding = False
            request._fiveducks_issued = issued
            return
        services.set_scopes(name=obj.name, scopes=data["scopes"])
        services.set_disabled(name=obj.name, disabled=data["is_disabled"])

    def response_add(self, request, obj, post_url_continue=None):
        issued = getattr(request, "_fiveducks_issued", None)
        if issued is not None:
            return _secret_page(request, issued, "Created")
        return super().response_add(request, obj, post_url_continue)

    @admin.action(description="Rotate: add a second secret (shown once; one client at a time)")
    def rotate_secret(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Rotate one client at a time.", messages.ERROR)
            return None
        try:
            issued = services.rotate(name=queryset.get().name)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return None
        return _secret_page(request, issued, "Rotated")

    @admin.action(description="Revoke old secrets (keep the newest)")
    def revoke_old_secrets(self, request, queryset) -> None:
        total = sum(services.revoke_old(name=client.name) for client in queryset)
        self.message_user(request, f"{total} old secret(s) revoked.", messages.SUCCESS)

    @admin.action(description="Disable (refuse every call)")
    def disable(self, request, queryset) -> None:
        for client in queryset:
            services.set_disabled(name=client.name, disabled=True)
        self.message_user(request, f"{queryset.count()} client(s) disabled.", messages.SUCCESS)

    @admin.action(description="Enable")
    def enable(self, request, queryset) -> None:
        for client in queryset:
            services.set_disabled(name=client.name, disabled=False)
        self.message_user(request, f"{queryset.count()} client(s) enabled.", messages.SUCCESS)


@admin.register(ServiceCall)
class ServiceCallAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit log of the service API: every call's client, user, action and result."""

    list_display = ("created_at", "client", "user_id", "action", "status", "result", "request_id")
    list_select_related = ("client",)
    list_filter = ("action", "status", "client")
    search_fields = ("=user_id", "request_id", "client__name")
    date_hierarchy = "created_at"

    def has_module_permission(self, request) -> bool:
        return _allowed(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return _allowed(request)
