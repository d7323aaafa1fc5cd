"""Where an open deal's win probability comes from: a pluggable source.

`pipeline_health` weights every open deal by a probability from a `ProbabilitySource`. The
default, `StageTable`, reads the documented table `stage_probabilities.yaml` (the stage alone
decides). A deal model (`tools.deals`) is another source: anything with a `name` and a
`probabilities(deals)` method fits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import yaml

from tools.errors import DataFault

if TYPE_CHECKING:
    from tools.pipeline.deals import OpenDeal

TABLE_FILE = Path(__file__).with_name("stage_probabilities.yaml")


class ProbabilitySource(Protocol):
    """Gives each open deal its win probability (0..1)."""

    @property
    def name(self) -> str:
        """Short label shown in the tool's inputs, e.g. `stage_table`."""
        ...

    def probabilities(self, deals: Sequence[OpenDeal]) -> list[float]:
        """One probability per deal, in order."""
        ...


@dataclass(frozen=True)
class StageTable:
    """The stage decides: `stages[deal.stage]`, or `unlisted` for a stage the table lacks."""

    stages: Mapping[str, float]
    unlisted: float
    name: str = "stage_table"
    unlisted_seen: set[str] = field(default_factory=set, compare=False, hash=False)

    def probabilities(self, deals: Sequence[OpenDeal]) -> list[float]:
        out = []
        for deal in deals:
            p = self.stages.get(deal.stage)
            if p is None:
                self.unlisted_seen.add(deal.stage)
                p = self.unlisted
            out.append(p)
        return out


@lru_cache(maxsize=4)
def _read(path: Path) -> tuple[tuple[tuple[str, float], ...], float]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    stages = doc.get("stages") or {}
    unlisted = doc.get("unlisted", 0.2)
    values = [*stages.values(), unlisted]
    if not isinstance(stages, dict) or not all(isinstance(v, int | float) and 0 <= v <= 1 for v in values):
        raise DataFault(f"{path}: `stages` must map stage names to probabilities between 0 and 1")
    return tuple((str(k), float(v)) for k, v in stages.items()), float(unlisted)


def default_stage_table(path: Path = TABLE_FILE) -> StageTable:
    """The shipped stage table (a fresh object: it records the unlisted stages it met)."""
    stages, unlisted = _read(path)
    return StageTable(stages=dict(stages), unlisted=unlisted)
