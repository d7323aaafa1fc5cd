"""Turning CSV text into typed values: model fields by column type, attributes by inference."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

AttributeType = Literal["int", "float", "bool", "str", "empty"]

_INT = re.compile(r"[+-]?\d+")
_INT_LEADING_ZERO = re.compile(r"[+-]?0\d")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")  # 1,234,567.89 in model number fields
_AMBIGUOUS_DATE = re.compile(r"\d{1,2}[/-]\d{1,2}[/-]\d{2,4}")

TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})

# Unambiguous formats tried after ISO 8601. "03/04/2025" is deliberately absent: whether it is
# March or April depends on the exporting locale, so the mapping must say (`date_formats`).
DEFAULT_DATE_FORMATS = (
    "%Y/%m/%d",
    "%d.%m.%Y",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%d-%b-%Y",
)


class ConversionError(ValueError):
    """A cell that cannot become the field's type; the message is shown to the user."""


def parse_int(text: str) -> int:
    cleaned = text.replace(",", "") if _GROUPED.fullmatch(text) else text
    if _INT.fullmatch(cleaned):
        return int(cleaned)
    try:
        number = float(cleaned) if _FLOAT.fullmatch(cleaned) else math.nan
    except OverflowError:
        number = math.nan
    if math.isfinite(number) and number.is_integer():
        return int(number)  # "12.0" from a spreadsheet
    raise ConversionError(f"not a whole number: {text!r}")


def parse_float(text: str) -> float:
    cleaned = text.replace(",", "") if _GROUPED.fullmatch(text) else text
    if not _FLOAT.fullmatch(cleaned):
        raise ConversionError(f"not a number: {text!r}")
    number = float(cleaned)
    if not math.isfinite(number):
        raise ConversionError(f"number out of range: {text!r}")
    return number


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConversionError(f"not a yes/no value: {text!r} (use true/false, yes/no, y/n or 1/0)")


def parse_date(text: str, formats: Sequence[str] = ()) -> dt.date:
    """ISO 8601 (date or date-time), the mapping's `date_formats`, then unambiguous common formats."""
    for fmt in formats:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    try:
        return dt.datetime.fromisoformat(text).date()
    except ValueError:
        pass
    for fmt in DEFAULT_DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    if _AMBIGUOUS_DATE.fullmatch(text) and not formats:
        raise ConversionError(
            f"ambiguous date {text!r}: day/month order depends on the export's locale; "
            "set `date_formats` in the mapping, e.g. ['%d/%m/%Y'] or ['%m/%d/%Y']"
        )
    raise ConversionError(f"not a date: {text!r} (expected YYYY-MM-DD or a format in `date_formats`)")


_HAS_TIME = re.compile(r"\d{1,2}:\d{2}")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def parse_datetime(text: str, formats: Sequence[str] = ()) -> dt.datetime:
    """A date with a time of day: ISO 8601 ("2026-03-02 09:14", "2026-03-02T09:14:00Z"), the
    mapping's `date_formats` (e.g. '%m/%d/%Y %H:%M'), or a date format followed by HH:MM[:SS].
    A time with an offset is converted to UTC; a bare date is refused (the time is the point)."""
    if not _HAS_TIME.search(text):
        raise ConversionError(f"no time of day in {text!r} (expected e.g. 2026-03-02 09:14)")
    value: dt.datetime | None = None
    for fmt in formats:
        try:
            value = dt.datetime.strptime(text, fmt)
            break
        except ValueError:
            continue
    if value is None:
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            day, _, clock = text.rpartition(" ")
            if not day:
                raise ConversionError(f"not a date and time: {text!r}") from None
            m = _CLOCK.fullmatch(clock)
            try:
                if m is None:
                    raise ValueError(clock)
                value = dt.datetime.combine(
                    parse_date(day, formats), dt.time(int(m[1]), int(m[2]), int(m[3] or 0))
                )
            except (ConversionError, ValueError):
                raise ConversionError(
                    f"not a date and time: {text!r} (expected YYYY-MM-DD HH:MM or a format in `date_formats`)"
                ) from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def parse_list(text: str) -> list[str]:
    """A JSON array of strings/numbers, or items separated by ';'."""
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConversionError(f"not a JSON list: {text!r} ({exc.msg})") from None
        if not isinstance(value, list) or any(isinstance(v, dict | list) or v is None for v in value):
            raise ConversionError(f"not a list of names: {text!r}")
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in text.split(";") if part.strip()]


def convert(kind: str, text: str, date_formats: Sequence[str] = ()) -> Any:
    """Convert non-blank `text` to a value of the field kind; raises ConversionError."""
    if kind == "str":
        return text
    if kind == "int":
        return parse_int(text)
    if kind == "float":
        return parse_float(text)
    if kind == "bool":
        return parse_bool(text)
    if kind == "date":
        return parse_date(text, date_formats)
    if kind == "datetime":
        return parse_datetime(text, date_formats)
    if kind == "list":
        return parse_list(text)
    raise ConversionError(f"cannot import a value of kind {kind!r} from one cell")


@dataclass
class AttributeInference:
    """Infers one attribute column's type over the whole file: numbers only, never yes/no.

    A categorical "Yes"/"No" column stays text; a column becomes `int` when every non-blank
    value is a plain integer without a leading zero (so codes like "00123" stay text), else
    `float` when every non-blank value is a finite decimal number, else `str`.
    """

    ints: bool = True
    floats: bool = True
    seen: int = 0
    blanks: int = 0
    numeric: int = 0
    first_text: tuple[int, str] | None = None  # (line, value) of the first non-number

    def add(self, text: str, line: int = 0) -> None:
        if not text:
            self.blanks += 1
            return
        self.seen += 1
        leading_zero = bool(_INT_LEADING_ZERO.match(text))
        if self.ints and not (_INT.fullmatch(text) and not leading_zero):
            self.ints = False
        try:
            is_number = bool(_FLOAT.fullmatch(text)) and math.isfinite(float(text))
        except OverflowError:
            is_number = False
        if is_number:
            self.numeric += 1
        elif self.first_text is None:
            self.first_text = (line, text)
        if not is_number or leading_zero:
            self.floats = False

    @property
    def type(self) -> AttributeType:
        if self.seen == 0:
            return "empty"
        if self.ints:
            return "int"
        if self.floats:
            return "float"
        return "str"

    def mostly_numeric(self, share: float = 0.9) -> bool:
        """Text column whose values are nearly all numbers: probably a typo in the export."""
        return self.type == "str" and self.first_text is not None and self.numeric >= share * self.seen
