"""The platform's one-time flags: notifications, badges and easter eggs.

Ids are the legacy KV store's array indexes (`notifications[i] === 1`, see
../shared/kv-format.md), so migrated flags keep their meaning. The catalogue lives in code: a
new flag ships with the frontend code that shows it.
"""

from __future__ import annotations

from dataclasses import dataclass


class Kind:
    NOTIFICATION = "notification"
    BADGE = "badge"
    EASTER_EGG = "easter_egg"

    CHOICES = (
        (NOTIFICATION, "Notification"),
        (BADGE, "Badge"),
        (EASTER_EGG, "Easter egg"),
    )


@dataclass(frozen=True)
class Entry:
    kind: str
    id: int
    name: str
    description: str
    reward: int = 0  # credits granted once when an easter egg is claimed
    phrase: str = ""  # the easter egg's secret phrase, normalised (see normalise_phrase)


NOTIFICATIONS: tuple[Entry, ...] = (
    Entry(Kind.NOTIFICATION, 1, "waitlist_joined", "Shown once, after the user joins the waitlist."),
    Entry(Kind.NOTIFICATION, 2, "search_tooltip_shown", "The search tooltip, shown once."),
    Entry(Kind.NOTIFICATION, 3, "email_tooltip_shown", "The email tooltip, shown once."),
    Entry(
        Kind.NOTIFICATION,
        4,
        "start_selling_tooltip_shown",
        "The start-selling tooltip, shown once.",
    ),
)

BADGES: tuple[Entry, ...] = (
    Entry(Kind.BADGE, 0, "registration_complete", "Awarded by the registration flow when it completes."),
)

EASTER_EGGS: tuple[Entry, ...] = (
    Entry(Kind.EASTER_EGG, 0, "5ducks", "Typing the phrase “5ducks”.", reward=1000, phrase="5ducks"),
    Entry(
        Kind.EASTER_EGG,
        1,
        "free palestine",
        "Typing the phrase “free palestine”.",
        reward=3000,
        phrase="free palestine",
    ),
    Entry(
        Kind.EASTER_EGG,
        2,
        "he is risen",
        "Typing the phrase “he is risen”.",
        reward=3000,
        phrase="he is risen",
    ),
)

_BY_KIND: dict[str, dict[int, Entry]] = {
    Kind.NOTIFICATION: {e.id: e for e in NOTIFICATIONS},
    Kind.BADGE: {e.id: e for e in BADGES},
    Kind.EASTER_EGG: {e.id: e for e in EASTER_EGGS},
}
_EGGS_BY_PHRASE: dict[str, Entry] = {e.phrase: e for e in EASTER_EGGS}

KINDS: tuple[str, ...] = tuple(_BY_KIND)


def entries(kind: str) -> tuple[Entry, ...]:
    return tuple(_BY_KIND.get(kind, {}).values())


def get(kind: str, entry_id: int) -> Entry | None:
    return _BY_KIND.get(kind, {}).get(entry_id)


def name_of(kind: str, entry_id: int) -> str:
    """The catalogue name, or a placeholder for an id the code no longer knows (migrated data)."""
    entry = get(kind, entry_id)
    return entry.name if entry else f"unknown_{kind}_{entry_id}"


def normalise_phrase(phrase: str) -> str:
    """Matching is case-insensitive and ignores surrounding whitespace."""
    return phrase.strip().casefold()


def egg_for_phrase(phrase: str) -> Entry | None:
    return _EGGS_BY_PHRASE.get(normalise_phrase(phrase))
