"""What every app's admin shares."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.html import format_html


class ReadOnlyAdminMixin:
    """Staff may look (with the view permission) but never add, change or delete here: changes
    go through the services."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    # Viewing follows Django's model permissions (`view_<model>`): a staff account sees only
    # what its groups and permissions grant (ModelAdmin's own has_view_permission).


class NumberInputFilter(admin.SimpleListFilter):
    """A list filter whose number staff type in (a few presets stay as links).

    Subclasses set `title`, `parameter_name`, `presets` and `filter_queryset(queryset, n)`.
    """

    template = "console/number_filter.html"
    presets: tuple[int, ...] = ()

    def lookups(self, request, model_admin):
        return [(str(n), f"{n:,}") for n in self.presets]

    def has_output(self) -> bool:
        return True

    def number(self) -> int | None:
        raw = (self.value() or "").replace(",", "").strip()
        return int(raw) if raw.isdigit() else None

    def choices(self, changelist):
        # The form keeps every other filter, search and ordering of the list.
        self.other_params = [(k, v) for k, v in changelist.params.items() if k != self.parameter_name]
        yield from super().choices(changelist)

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        n = self.number()
        return queryset if n is None else self.filter_queryset(queryset, n)

    def filter_queryset(self, queryset: QuerySet, n: int) -> QuerySet:  # pragma: no cover - abstract
        raise NotImplementedError


class EmailTitleMixin:
    """A change page titled with the customer's email (not "1021: 45030")."""

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        user = obj if isinstance(obj, get_user_model()) else getattr(obj, "user", None)
        if user is not None and user.email:
            title = {"title": user.email, "subtitle": self.model._meta.verbose_name}
            extra_context = {**title, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context)


def customer_link(user_id: int) -> str:
    """The console's customer page for a user (a list column)."""
    return format_html('<a href="{}">customer page</a>', reverse("console:customer", args=[user_id]))


def titled(filter_class: type, title: str) -> type:
    """A field list filter with its own title ("subscription status", not the field's "status")."""

    class Titled(filter_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.title = title

    return Titled
