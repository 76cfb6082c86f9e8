"""The words every part of the engine shares: stages, health values, channels, and the
base of every config section. No imports from the rest of the engine, so anything may use it."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

STAGES = ("prospect", "first_buyer", "repeat", "loyal", "advocate")
HEALTHS = ("active", "at_risk", "lapsed")
# The change feed's third dimension beside stage and health: the person's value segment by CLV,
# with the value model in force (docs/value.md).
VALUE_SEGMENT = "value_segment"
# Spelled out once, as the type; the tuple is read from it.
Channel = Literal["web", "mobile_app", "email", "sms", "phone", "in_store", "mail", "fax", "social", "chat", "partner"]
CHANNELS: tuple[str, ...] = get_args(Channel)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
