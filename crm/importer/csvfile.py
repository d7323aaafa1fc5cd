"""Reading a CSV file record by record with the physical line number where each record starts.

Line numbers count physical lines of the file (line 1 = header), the way an editor shows them,
whatever the line endings (CRLF or LF) and even when a quoted field spans several lines.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any


@dataclass(frozen=True)
class Record:
    line: int
    cells: list[str]


class CsvProblem(Exception):
    """The file cannot be read further (bad encoding, malformed quoting)."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)


MAX_LINE_CHARS = 1_000_000
"""Characters in one physical line (its line break not counted): a longer line is refused with its
number before it is read whole (an endless line, e.g. from /dev/zero, grew an import to 18.6 GB
before this cap). Fields are capped by the csv module's own limit (`csv.field_size_limit()`,
131,072 characters), which also bounds a quoted field left open across many short lines."""


def bounded_lines(handle: IO[str], limit: int, first_line: int = 1) -> Iterator[str]:
    """The lines of `handle`, refusing (CsvProblem) a line longer than `limit` characters."""
    number = first_line
    while True:
        # +2: a line of exactly `limit` characters and its CRLF is read whole (with +1 its "\n"
        # came back as a line of its own, shifting every later line number by one)
        line = handle.readline(limit + 2)
        if not line:
            return
        if len(line.rstrip("\r\n")) > limit:
            raise CsvProblem(number, f"line longer than {limit:,} characters: not a CSV this importer reads "
                                     "(check the file and its delimiter)")
        yield line
        number += 1


class CsvFile:
    """Context manager over a CSV file: `header`, then `records()`."""

    def __init__(self, path: Path, *, encoding: str = "utf-8-sig", delimiter: str = ",",
                 max_line_chars: int | None = None) -> None:
        self.max_line_chars = max_line_chars or MAX_LINE_CHARS
        self.path = path
        self.encoding = encoding
        self.delimiter = delimiter
        self.header: list[str] = []
        self.header_line = 1
        self.blank_lines = 0
        self._handle: IO[str] | None = None
        self._csv: Any = None  # the csv reader (its type is private to the csv module)

    def __enter__(self) -> CsvFile:
        try:
            self._handle = self.path.open(encoding=self.encoding, newline="")
        except OSError as exc:
            raise CsvProblem(None, f"cannot open {str(self.path)!r}: {exc.strerror or exc}") from None
        except LookupError:
            raise CsvProblem(None, f"unknown encoding {self.encoding!r} in the mapping") from None
        self._csv = csv.reader(bounded_lines(self._handle, self.max_line_chars), delimiter=self.delimiter)
        try:
            for row in self._rows():
                if any(cell.strip() for cell in row):
                    self.header = [cell.strip() for cell in row]
                    self.header_line = self._csv.line_num
                    break
            else:
                raise CsvProblem(1, "the file is empty: expected a header row naming the columns")
        except BaseException:
            self._handle.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.close()

    def _rows(self) -> Iterator[list[str]]:
        while True:
            start = self._csv.line_num + 1  # the physical line where the next record starts
            try:
                row: list[str] = next(self._csv)
            except StopIteration:
                return
            except csv.Error as exc:
                if "field larger than field limit" in str(exc):
                    # named by the record's first line, where an editor finds it (an open quote runs far past it)
                    reach = self._csv.line_num
                    where = (f", running to line {reach:,}: check for a quote that is never closed" if reach > start
                             else ": not a CSV this importer reads (check the file and its delimiter)")
                    raise CsvProblem(start, f"a field longer than {csv.field_size_limit():,} characters{where}") from None
                raise CsvProblem(self._csv.line_num, f"malformed CSV: {exc}") from None
            except UnicodeDecodeError as exc:
                raise CsvProblem(
                    self._csv.line_num + 1,
                    f"the file is not valid {self.encoding} ({exc.reason}); "
                    "set `encoding:` in the mapping, e.g. cp1252 or latin-1",
                ) from None
            yield row

    def records(self) -> Iterator[Record]:
        """Non-blank records after the header; blank lines are counted in `blank_lines`."""
        previous_end: int = self._csv.line_num
        for row in self._rows():
            start = previous_end + 1
            previous_end = self._csv.line_num
            if not any(cell.strip() for cell in row):
                self.blank_lines += 1
                continue
            yield Record(line=start, cells=row)
