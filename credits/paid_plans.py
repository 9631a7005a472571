"""The question credits asks billing, without importing it: does this user pay for a plan?

credits' monthly top-up grants the free tier's allowance only to users without a paid plan
(paid plans get their monthly credits from Stripe's paid invoice). Who has a paid plan is
billing's knowledge, and billing sits above credits (credits never imports billing: the
import-linter contract in `.importlinter`). So billing registers its answer here when its app is
ready (`BillingConfig.ready`), and credits asks through `has_paid_plan`. With no check
registered (billing not installed), nobody has a paid plan.
"""

from __future__ import annotations

from collections.abc import Callable

PaidPlanCheck = Callable[[int], bool]

_checks: list[PaidPlanCheck] = []


def register_paid_plan_check(check: PaidPlanCheck) -> None:
    """Add a check `check(user_id) -> bool`; registering the same check twice is a no-op."""
    if check not in _checks:
        _checks.append(check)


def has_paid_plan(*, user_id: int) -> bool:
    """True when any registered check says the user pays for a plan."""
    return any(check(user_id) for check in _checks)
