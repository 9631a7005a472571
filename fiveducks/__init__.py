"""The integration with the 5Ducks platform that fivedocks serves.

The platform's logins (Firebase ID tokens, its Express session cookie), the first-sight import of
its users, its legacy routes (exact paths and camelCase shapes) and the service API its backend
calls. The package is named `fiveducks`, not `platform`, because a top-level package named
`platform` would shadow Python's standard-library `platform` module for every library that imports
it. Domains never import this package; it sits on top of them.
"""
