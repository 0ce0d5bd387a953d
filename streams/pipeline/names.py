"""Topic names: the public input topics and the worker's internal ones, from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from streams.config import Settings

KIND_HEADER = "kefu-kind"  # on the rekey topic: which input topic a record came from


@dataclass(frozen=True, slots=True)
class Names:
    """Topic names: the public input topics and the worker's internal ones."""

    chat: str
    orders: str
    ratings: str
    rekey: str
    facts: str
    deadletter: str
    conv_changelog: str
    agg_changelog: str
    heartbeat: str
    agents: str = "kefu.agents"  # status events (keyed by agent, not by conversation)

    @staticmethod
    def for_settings(settings: Settings) -> Names:
        app = settings.app_id
        return Names(
            chat=settings.topic_chat,
            orders=settings.topic_orders,
            ratings=settings.topic_ratings,
            agents=settings.topic_agents,
            rekey=f"{app}-chat-rekey",
            facts=f"{app}-facts",
            deadletter=settings.topic_deadletter,
            conv_changelog=f"{app}-conversations-changelog",
            agg_changelog=f"{app}-aggregates-changelog",
            heartbeat=f"{app}-heartbeat",
        )

    chat_kind = "chat"
