"""accounts' public interface for the project package (`fivedocks`), per the import-linter
contract "fivedocks imports no app's internals" (`.importlinter`): `/metrics` authenticates a
staff member's API token the way the API does."""

from accounts.authentication import HashedTokenAuthentication

__all__ = ["HashedTokenAuthentication"]
