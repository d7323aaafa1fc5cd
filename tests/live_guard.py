"""The exception the autouse live-model guard (conftest `_no_live_model`) raises."""

from __future__ import annotations


class LiveModelBlockedError(AssertionError):
    """A test that is neither `live` nor replaying a cassette tried to reach a model server."""
