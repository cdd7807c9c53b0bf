"""The feedback capability: thumbs, scores, labels, comments and corrections on traces
(from end users through `app` keys, and from reviewers), made durable through the
write-ahead log before they are acknowledged; feedback metrics (score over time per
route, model and prompt version) that alert rules can take; review queues."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.capability import Capability
from shipyard.identity.roles import ADMINS, CALLERS, HUMAN, Role

if TYPE_CHECKING:
    from shipyard.feedback.service import Feedback
    from shipyard.platform import Platform

REVIEWERS = frozenset({Role.owner, Role.admin, Role.developer})


def build(platform: Platform) -> Feedback:
    from shipyard.feedback.service import Feedback

    return Feedback(platform)


CAPABILITY = Capability(
    name="feedback",
    order=65,  # after tracing: feedback is copied the route and model of its trace
    permissions={
        # an app key may add feedback (its end users' thumbs), never read it back
        "feedback:write": CALLERS,
        "feedback:read": HUMAN,
        "feedback:review": REVIEWERS,  # work through review queues
        "feedback:manage": ADMINS,  # queue rules
    },
    # queues first: /api/feedback/{feedback_id} would take /api/feedback/queues
    routers=("shipyard.feedback.api.queues:router", "shipyard.feedback.api.feedback:router"),
    pages=(
        "shipyard.feedback.pages:router",
        "shipyard.feedback.queue_pages:router",
        "shipyard.feedback.overview_pages:router",
    ),
    migrations="shipyard.feedback:migrations",
    service=build,
)
