"""Tenancy and identity: organization, workspaces, environments, users, API keys, roles."""
