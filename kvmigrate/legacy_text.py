"""The platform's own wording for the history entries fivedocks writes back to the KV store.

The old code shows these strings, and kvmigrate reads them back (a `credit` entry's description
says whether it was a bonus, an allowance or a purchase: transforms.credits.credit_kind), so
ledger rows the app wrote are rendered with the words the platform itself would have used.
Derived from ../shared/platform-api.md (§0 lazy creation, §1.2 easter eggs, §5 the monthly
top-up, §6 the subscription bonus) and the samples in ../shared/kv-format.md; the easter eggs'
emoji and descriptions and the plan texts of the top-up are the platform's catalogue
(`server/features/billing/gamification/types.ts`, `credits/service.ts` at REV). One table,
rendered from by `render.render_entry` (reverse and mirror alike); docs/kv-layout.md shows it.
"""

from __future__ import annotations

from datetime import datetime

# `deductCredits(userId, searchType)`: a debit with `searchType` and `success: true`. The
# description is the operation key with spaces for underscores, then " search" (kv-format.md's
# sample: `company_and_contacts` -> "company and contacts search"), so `company_search` really
# reads "company search search".
OPERATION_DESCRIPTIONS: dict[str, str] = {
    "company_search": "company search search",
    "contact_discovery": "contact discovery search",
    "email_search": "email search search",
    "full_search": "full search search",
    "company_and_contacts": "company and contacts search",
    "company_contacts_emails": "company contacts emails search",
    "individual_email": "individual email search",
    "individual_search": "individual search search",
    "search_extension": "search extension search",
}

# The platform's defaults for a record it creates (`getUserCredits`, lazy creation).
DEFAULT_MONTHLY_ALLOWANCE = 250
WELCOME_BONUS = "Welcome bonus - 250 free credits"

# Easter eggs by id: the credit entry is `"<emoji> <description>"` (claimEasterEgg).
EASTER_EGGS: dict[int, tuple[str, str]] = {
    0: ("🦆", "Company mascot discovery"),
    1: ("🇵🇸", "Solidarity bonus"),
    2: ("🐑", "Easter blessing"),
}

# The monthly top-up: `"Monthly top-up for <Month YYYY> (<plan text>)"`.
TOP_UP_PLAN_TEXT: dict[str | None, str] = {
    None: "free tier",
    "ugly-duckling": "The Duckling subscription (2,000 base + 3,000 bonus)",
    "duckin-awesome": "Mama Duck subscription (5,000 base + 10,000 bonus)",
}
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)  # fmt: skip


def operation(name: str) -> str:
    """A deduction's description; an operation the table does not know gets the same rule."""
    return OPERATION_DESCRIPTIONS.get(name) or f"{name.replace('_', ' ')} search"


def top_up(moment: datetime, plan: str | None = None) -> str:
    """The monthly top-up's description for the month of `moment` (the free tier without a plan)."""
    text = TOP_UP_PLAN_TEXT.get(plan) or f"{plan} subscription"
    return f"Monthly top-up for {_MONTHS[moment.month - 1]} {moment.year} ({text})"


def easter_egg(egg_id: int) -> str | None:
    found = EASTER_EGGS.get(egg_id)
    return f"{found[0]} {found[1]}" if found else None


def subscription_bonus(plan: str) -> str:
    """The credits the platform granted when a subscription became active (§6)."""
    return f"{plan} subscription activation bonus"
