"""The one list of the data domains: the apps whose data kvmigrate moves out of the KV store.

Everything that enumerates domains (kvmigrate's runs and report, the KV mirror's setting) uses
these constants, so adding a domain is one edit here (and its app). No Django import: settings
read it.
"""

# The domain apps, in load order (accounts first: every other domain's rows reference a user).
DOMAINS: tuple[str, ...] = ("accounts", "credits", "billing", "gmail", "notifications")

# The domains the KV mirror can write back (accounts has no KV record of its own to mirror).
MIRRORED_DOMAINS: tuple[str, ...] = ("credits", "billing", "gmail", "notifications")
