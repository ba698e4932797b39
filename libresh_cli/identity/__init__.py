"""The identity provider: one account for every app (users, groups, OIDC clients)."""
