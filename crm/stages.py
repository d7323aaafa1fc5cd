"""Opportunity stages: one spelling, and which stages are closed.

CRMs name their stages freely ("Prospecting", "Engaging", "Proposal/Price Quote"); only the two
closed outcomes carry meaning the tools rely on. Every stage is stored as lower-case words joined
by `_`, and the usual spellings of a won or lost deal become `closed_won` / `closed_lost`.
"""

from __future__ import annotations

import re

from crm.models import CLOSED_STAGES, LOST_STAGE, WON_STAGE

_WON = frozenset({"won", "closed_won", "closedwon", "close_won", "win", "booked"})
_LOST = frozenset({"lost", "closed_lost", "closedlost", "close_lost", "loss", "closed_no_deal"})
_SEPARATORS = re.compile(r"[^0-9a-z]+")


def canonical_stage(text: str) -> str:
    """`"Closed Won"` → `closed_won`, `"Won"` → `closed_won`, `"Proposal/Price Quote"` → `proposal_price_quote`."""
    word = _SEPARATORS.sub("_", text.strip().lower()).strip("_")
    if word in _WON:
        return WON_STAGE
    if word in _LOST:
        return LOST_STAGE
    return word


def is_open(stage: str) -> bool:
    """Whether a (canonical) stage is open: anything but closed_won / closed_lost."""
    return stage not in CLOSED_STAGES
