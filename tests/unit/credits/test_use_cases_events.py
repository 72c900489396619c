"""What the credits use cases publish (on the in-memory outbox): a grant, each usage
charged, a pooling switch; nothing for a refused one."""

from __future__ import annotations

import pytest

from libs.common.errors import DomainError
from services.credits.domain import events
from services.credits.domain.model import GrantTarget
from tests.unit.credits.conftest import Books


async def test_grants_usage_and_pooling_publish_their_events(books: Books) -> None:
    await books.office("a")
    granted = await books.grant(GrantTarget.OFFICE_BALANCE, 100, "a")
    used = await books.use("a", 30)
    await books.pooling()

    published = books.uow.state.events.events[books.company_id]

    assert [e.event_type for e in published] == [
        events.CREDITS_GRANTED,
        events.USAGE_RECORDED,
        events.POOLING_CHANGED,
    ]
    assert published[0].data["grant_id"] == str(granted.grant.grant_id)
    assert published[0].data["balance"] == "100"
    assert published[1].data["usage_id"] == str(used.usage_id)
    assert published[1].data["amount"] == "30"
    assert published[2].data == {"currency": "USD", "enabled": True}


async def test_a_refused_grant_publishes_nothing(books: Books) -> None:
    await books.office("a")
    with pytest.raises(DomainError):
        await books.grant(GrantTarget.AI_AGENT_CREDITS, 5)  # no primary office
    assert books.uow.state.events.events.get(books.company_id, []) == []
