"""Reads for the staff console: one customer whole, the dashboard's figures, the report.

The console reads every domain (it is the one place that shows them together); no domain reads
it. Writes never happen here: the customer page links to the credit service's own form.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db.models import Count, Min, Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from billing import selectors as billing_selectors
from billing.models import Subscription, WebhookEvent, WebhookEventStatus
from credits import selectors as credit_selectors
from credits.models import CreditAccount, CreditTransaction
from cutover.models import KvOutbox
from gmail import selectors as gmail_selectors
from kvmigrate.models import MigrationRun, QuarantinedRecord
from notifications.models import UserNotification

LEDGER_ROWS = 10
SEARCH_LIMIT = 50


# --- the customer page -------------------------------------------------------------------------
@dataclass
class CustomerOverview:
    user: object
    account: CreditAccount | None
    balance: int
    held: int
    available: int
    subscription: dict
    subscription_row: Subscription | None
    gmail: object | None
    flags: list
    ledger: list
    ledger_count: int
    links: dict[str, str] = field(default_factory=dict)
    grant_url: str = ""


def find_customers(*, query: str) -> QuerySet:
    """Users whose email (or id, or Firebase uid) matches, exact email first."""
    query = query.strip()
    users = get_user_model().objects.all()
    condition = Q(email__icontains=query) | Q(firebase_uid=query)
    if query.isdigit():
        condition |= Q(pk=int(query))
    return users.filter(condition).order_by("email")[:SEARCH_LIMIT]


def customer_overview(*, user_id: int) -> CustomerOverview | None:
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        return None
    account = CreditAccount.objects.filter(user_id=user.pk).first()
    # Straight from the database (not the cache): balance and the open, unexpired holds.
    snapshot = credit_selectors.balance_from_database(user_id=user.pk)
    balance, held = snapshot.balance, snapshot.held
    ledger_rows = CreditTransaction.objects.filter(user_id=user.pk).select_related("created_by")
    email = user.email
    return CustomerOverview(
        user=user,
        account=account,
        balance=balance,
        held=held,
        # A blocked account can spend nothing, whatever its balance says.
        available=0 if account and account.is_blocked else max(snapshot.available, 0),
        subscription=billing_selectors.subscription_summary(user=user),
        subscription_row=Subscription.objects.filter(user_id=user.pk).first(),
        gmail=gmail_selectors.connection_for(user=user),
        flags=list(UserNotification.objects.filter(user_id=user.pk).order_by("kind", "notification_id")),
        ledger=list(ledger_rows.order_by("-created_at", "-id")[:LEDGER_ROWS]),
        ledger_count=ledger_rows.count(),
        links={
            "user": reverse("admin:accounts_user_change", args=[user.pk]),
            "credit account": reverse("admin:credits_creditaccount_change", args=[user.pk])
            if account
            else "",
            "ledger": _search(reverse("admin:credits_credittransaction_changelist"), email),
            "subscription": _search(reverse("admin:billing_subscription_changelist"), email),
            "gmail connection": _search(reverse("admin:gmail_gmailtoken_changelist"), email),
            "flags": _search(reverse("admin:notifications_usernotification_changelist"), email),
            "holds": _search(reverse("admin:credits_credithold_changelist"), email),
        },
        grant_url=reverse("admin:credits_creditaccount_change_credits", args=[user.pk]),
    )


def _search(url: str, email: str) -> str:
    from urllib.parse import urlencode

    return f"{url}?{urlencode({'q': email})}"


# --- the report --------------------------------------------------------------------------------
def active_with_credits_above(*, min_credits: int) -> QuerySet:
    """The seed's question: users with credits above N and an active (or trialing) subscription."""
    return billing_selectors.users_with_credits_above_and_active_subscription(min_credits=min_credits)


# --- the dashboard -----------------------------------------------------------------------------
@dataclass
class Panel:
    """One figure on the dashboard: `state` is ok, warn or bad; `link` opens the rows behind it."""

    title: str
    value: str
    detail: str = ""
    link: str = ""
    state: str = "ok"


def _migration_panel() -> Panel:
    last = MigrationRun.objects.order_by("-started_at", "-id").first()
    quarantined = QuarantinedRecord.objects.filter(resolved_at__isnull=True).count()
    link = reverse("admin:kvmigrate_migrationrun_changelist")
    if last is None:
        return Panel("KV migration", "no run yet", f"{quarantined:,} quarantined records open", link, "warn")
    mismatched = last.total("mismatched")
    state = {"succeeded": "ok", "running": "ok", "attention": "warn"}.get(last.status, "bad")
    when = timezone.localtime(last.finished_at or last.started_at)
    return Panel(
        "KV migration",
        f"{last.mode} {last.status}",
        f"last run {when:%Y-%m-%d %H:%M}; {quarantined:,} quarantined open; {mismatched:,} mismatched",
        reverse("admin:kvmigrate_migrationrun_change", args=[last.pk]),
        state if not (quarantined or mismatched) or state == "bad" else "warn",
    )


def _mirror_panel() -> Panel:
    backlog = KvOutbox.objects.aggregate(
        rows=Count("id"), oldest=Min("created_at"), failing=Count("id", filter=Q(attempts__gt=0))
    )
    lag = (timezone.now() - backlog["oldest"]).total_seconds() if backlog["oldest"] else 0.0
    state = "bad" if backlog["failing"] else "warn" if lag > 60 else "ok"
    return Panel(
        "KV mirror lag",
        f"{lag:,.0f} s",
        f"{backlog['rows']:,} changes waiting; {backlog['failing']:,} with failed attempts",
        reverse("admin:cutover_kvoutbox_changelist"),
        state,
    )


def _webhook_panel() -> Panel:
    """Failed events (a handler raised: reprocess after a fix) and unmatched ones (an unknown
    Stripe customer: staff link it)."""
    problem = [WebhookEventStatus.FAILED, WebhookEventStatus.UNMATCHED]
    counts = dict(
        WebhookEvent.objects.filter(status__in=problem).values_list("status").annotate(n=Count("id"))
    )
    total = sum(counts.values())
    url = reverse("admin:billing_webhookevent_changelist") + "?status__in=" + ",".join(problem)
    detail = "; ".join(f"{counts.get(s, 0):,} {s}" for s in problem)
    state = "bad" if counts.get(WebhookEventStatus.FAILED) else "warn" if total else "ok"
    return Panel("Stripe webhook events", f"{total:,} need a look", detail, url, state)


def _blocked_panel() -> Panel:
    blocked = CreditAccount.objects.filter(is_blocked=True).count()
    url = reverse("admin:credits_creditaccount_changelist") + "?is_blocked__exact=1"
    return Panel(
        "Blocked accounts", f"{blocked:,}", "accounts that may not spend", url, "warn" if blocked else "ok"
    )


def _holds_panel() -> Panel:
    """Open, unexpired holds of the service API (an expired one no longer counts)."""
    figures = credit_selectors.holds(state="open").aggregate(
        n=Count("id"), credits=Sum("amount"), oldest=Min("created_at")
    )
    detail = f"{figures['credits'] or 0:,} credits held"
    if figures["oldest"]:
        detail += f"; oldest since {timezone.localtime(figures['oldest']):%Y-%m-%d %H:%M}"
    url = reverse("admin:credits_credithold_changelist") + "?state=open"
    return Panel("Open credit holds", f"{figures['n']:,}", detail, url, "ok")


PANELS: list[Callable[[], Panel]] = [
    _migration_panel,
    _mirror_panel,
    _webhook_panel,
    _blocked_panel,
    _holds_panel,
]


def dashboard_panels() -> list[Panel]:
    return [build() for build in PANELS]
