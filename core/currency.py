"""How an amount in the CRM's currency (`settings.currency`, an ISO 4217 code) is written."""

from __future__ import annotations

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "CHF": "CHF ", "CAD": "CA$", "AUD": "A$"}


def symbol(code: str) -> str:
    """The prefix amounts in `code` are written with: "$" for USD, the code and a space otherwise."""
    return SYMBOLS.get(code, f"{code} ")


def amount(x: float, code: str) -> str:
    """Whole units with thousands separators: $19,255,500, -€1,200, SEK 300."""
    return f"{'-' if x < 0 else ''}{symbol(code)}{abs(x):,.0f}"
