"""The record every reader yields, whatever the source format."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Review:
    """One user-item interaction with its review.

    ``timestamp`` is unix seconds (readers convert ms and date strings); ``rating`` may be None where the
    source has none; ``title`` (Amazon ``summary``) and ``text`` may be empty strings.
    """

    user: str
    item: str
    timestamp: int
    rating: float | None = None
    text: str = ""
    title: str = ""
