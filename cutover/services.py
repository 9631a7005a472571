from django.db import transaction

from cutover.models import Domain, WriteFreeze
from cutover.selectors import freeze_cache_key
from fivedocks import coherence
from fivedocks.errors import DomainError


def set_freeze(*, domain: str, frozen: bool, reason: str = "", retry_after_seconds: int = 30) -> WriteFreeze:
    if domain not in Domain.values:
        raise DomainError(f"Unknown domain {domain!r}; known: {', '.join(Domain.values)}.")
    with transaction.atomic():
        row, _ = WriteFreeze.objects.select_for_update().get_or_create(domain=domain)
        row.frozen = frozen
        row.reason = reason
        row.retry_after_seconds = retry_after_seconds
        row.save()
        # Every serving process forgets its remembered answer when this commits.
        coherence.evict_on_commit(freeze_cache_key(domain))
    return row
