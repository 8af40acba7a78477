"""What the API needs, built by the composition root (`bootstrap.System.services`) and
handed to `create_app`."""

from __future__ import annotations

import attrs

from taskyard.domain.client import Client
from taskyard.domain.ports import Coordinator, JobStore
from taskyard.entrypoints.api.grouping import SubmissionGroups


@attrs.frozen(kw_only=True)
class Services:
    """The API's dependencies: the store, the coordinator when one is configured, the
    domain client (validation and submission, shared with the Python library), and the
    bearer tokens (none: the API is open)."""

    store: JobStore
    client: Client
    coordinator: Coordinator | None = None
    tokens: tuple[str, ...] = ()
    submissions: SubmissionGroups = attrs.field(
        default=attrs.Factory(lambda self: SubmissionGroups(self.client), takes_self=True)
    )
    """Submissions through `client`, concurrent requests sharing store calls."""

    def __attrs_post_init__(self) -> None:
        assert self.client.store is self.store, "the client must write to the same store"
        assert self.client.coordinator is self.coordinator, "and ring the same coordinator"
        assert self.submissions.client is self.client, "and submit through the same client"
