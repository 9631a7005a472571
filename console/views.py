"""The staff console's pages (inside the admin: staff only, the admin's look and login)."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django import forms
from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from console import selectors

REPORT_SHOWN = 500  # rows on the page; the CSV has them all
DEFAULT_MIN_CREDITS = 100


def _context(request: HttpRequest, title: str, **extra) -> dict:
    return {**admin.site.each_context(request), "title": title, **extra}


def customer_search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    users = list(selectors.find_customers(query=query)) if query else []
    if len(users) == 1:
        return HttpResponseRedirect(reverse("console:customer", args=[users[0].pk]))
    context = _context(request, "Find a customer", query=query, users=users, limit=selectors.SEARCH_LIMIT)
    return TemplateResponse(request, "console/customer_search.html", context)


def customer(request: HttpRequest, user_id: int) -> HttpResponse:
    overview = selectors.customer_overview(user_id=user_id)
    if overview is None:
        raise Http404("No such user")
    context = _context(
        request,
        overview.user.email,
        c=overview,
        can_grant=request.user.has_perm("credits.grant_credits"),
    )
    return TemplateResponse(request, "console/customer.html", context)


class ReportForm(forms.Form):
    min_credits = forms.IntegerField(
        label="Credits above", min_value=0, max_value=10**12, initial=DEFAULT_MIN_CREDITS
    )


def report(request: HttpRequest) -> HttpResponse:
    """Users with credits above N (typed in) and an active or trialing subscription; CSV export."""
    form = ReportForm(request.GET or {"min_credits": DEFAULT_MIN_CREDITS})
    rows, total = [], 0
    if form.is_valid():
        n = form.cleaned_data["min_credits"]
        queryset = selectors.active_with_credits_above(min_credits=n)
        if request.GET.get("format") == "csv":
            return _csv(queryset, n)
        total = queryset.count()
        rows = list(queryset[:REPORT_SHOWN])
    context = _context(
        request,
        "Active subscribers with credits",
        form=form,
        rows=rows,
        total=total,
        shown=REPORT_SHOWN,
        csv_query=f"min_credits={form.cleaned_data['min_credits']}&format=csv" if form.is_valid() else "",
    )
    return TemplateResponse(request, "console/report.html", context, status=200 if form.is_valid() else 400)


CSV_COLUMNS = ("user_id", "email", "balance", "plan", "status", "current_period_end")


def _cell(value: object) -> str:
    """A spreadsheet must never run a cell as a formula (an email may start with '=' or '+')."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(queryset, min_credits: int) -> StreamingHttpResponse:
    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(CSV_COLUMNS)
        for user in queryset.iterator(chunk_size=2000):
            end = user.current_period_end.isoformat() if user.current_period_end else ""
            yield writer.writerow(
                [
                    user.pk,
                    _cell(user.email),
                    user.balance,
                    _cell(user.plan_type),
                    user.subscription_status,
                    end,
                ]
            )

    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="active-with-credits-above-{min_credits}-{stamp}.csv"'
    )
    return response
