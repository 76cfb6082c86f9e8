"""The words every part of the engine shares: stages, health values, channels, and the
base of every config section. No imports from the rest of the engine, so anything may use it."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

STAGES = ("prospect", "first_buyer", "repeat", "loyal", "advocate")
HEALTHS = ("active", "at_risk", "lapsed")
CHANNELS = ("web", "mobile_app", "email", "sms", "phone", "in_store", "mail", "fax",
            "social", "chat", "partner")
Channel = Literal[CHANNELS]  # type: ignore[valid-type]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
