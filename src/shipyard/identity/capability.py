"""Identity: the organization, workspaces, users, memberships, API keys and sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.capability import Capability
from shipyard.identity.roles import ADMINS, HUMAN, OWNER, PLATFORM, Role

if TYPE_CHECKING:
    from shipyard.identity.revocations import KeyRevocations
    from shipyard.platform import Platform


def revocations(platform: Platform) -> KeyRevocations:
    from shipyard.identity.revocations import KeyRevocations

    return KeyRevocations(platform.keys, platform.settings.redis_url)


CAPABILITY = Capability(
    name="identity",
    order=10,
    permissions={
        "me:read": HUMAN | {Role.app},
        "workspaces:read": HUMAN,
        # workspaces are the unit the instance is shared out in (the one slug namespace,
        # the instance's models, storage and, per workspace, budgets): creating them is
        # the platform's, not any workspace owner's
        "workspaces:manage": PLATFORM,
        "members:read": ADMINS,
        "members:manage": ADMINS,
        "users:read": ADMINS,
        "users:manage": OWNER,  # a new account, a member of the creator's workspace only
        "platform:users": PLATFORM,  # the platform-admin flag, deactivating an account
        "keys:read": ADMINS,
        "keys:manage": ADMINS,
    },
    routers=("shipyard.identity.router:router",),
    migrations="shipyard.store:migrations/versions",
    service=revocations,  # the foundation (identity, audit)
    cli=(
        ("users", "shipyard.cli.users:app"),
        ("keys", "shipyard.cli.keys:app"),
        ("workspaces", "shipyard.cli.workspaces:app"),
    ),
)
