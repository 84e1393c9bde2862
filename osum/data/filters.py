"""Sample filters (``data.filters``): audio length and target / sequence limits, per batch group.

``groups`` overrides any limit for one batch group (an output type or a task group), e.g. speech-token
targets at 25 Hz, which reach ~1200 tokens::

    filters: {max_target_tokens: 400, groups: {speech2text_token: {max_target_tokens: 1500}}}

A key that is not a filter fails at start, named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Filters:
    min_seconds: float = 0.1  # of each clip
    max_seconds: float = 30.0  # of each clip
    max_target_tokens: int = 400  # text and speech targets together
    max_sequence: int = 2000
    crop: bool = True  # audio over max_seconds is cropped, not skipped, for tasks whose target survives it
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # batch group -> overrides of the above

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Filters:
        config = dict(config or {})
        _check_keys(config, "data.filters", {f.name for f in dataclasses.fields(cls)})
        groups = {str(g): dict(v or {}) for g, v in dict(config.pop("groups", None) or {}).items()}
        limits = {f.name for f in dataclasses.fields(cls)} - {"groups"}
        for group, overrides in groups.items():
            _check_keys(overrides, f"data.filters.groups.{group}", limits)
        return cls(**config, groups=groups)

    def for_group(self, group: str) -> Filters:
        """The limits that apply to batch group ``group``."""
        overrides = self.groups.get(group)
        return dataclasses.replace(self, **overrides, groups={}) if overrides else self


def _check_keys(config: Mapping[str, Any], where: str, known: set[str]) -> None:
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
