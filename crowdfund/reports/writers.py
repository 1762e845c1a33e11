"""Writers: rows in, a CSV or XLSX file out, in constant memory.

Both neutralise text a spreadsheet would run as a formula (CSV injection): a cell starting with
`=`, `+`, `-`, `@`, a tab or a carriage return gets a leading single quote, so Excel, LibreOffice
and Google Sheets show it as text. Only text is touched; numbers and dates are written as such.
"""

import csv
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Protocol

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


class ReportWriter(Protocol):
    def write_header(self, header: list[str]) -> None: ...
    def write_rows(self, rows: list[tuple]) -> None: ...
    def close(self) -> None: ...
    def discard(self) -> None: ...


class CsvWriter:
    """RFC 4180 CSV in UTF-8 with a byte-order mark (without it Excel misreads accents), every
    field quoted as needed by the csv module; timestamps in ISO 8601 with microseconds, decimals
    as written, None empty.

    `ready_rows`: every value is already its cell's text, neutralised (the backers query's rows,
    selectors.backers_queryset(as_text=True)), or None; they are written as they come."""

    def __init__(self, path: str, *, ready_rows: bool = False):
        # UTF-8 with the mark written by hand: the utf-8-sig codec encodes in Python, once per row
        # (measured: about a quarter of the time to write a million rows).
        self._file: IO[str] = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        self._file.write("\ufeff")
        self._csv = csv.writer(self._file)
        self._ready_rows = ready_rows

    def write_header(self, header: list[str]) -> None:
        self._csv.writerow(header)

    def write_rows(self, rows: list[tuple]) -> None:
        self._csv.writerows(rows if self._ready_rows else csv_rows(rows))

    def close(self) -> None:
        self._file.close()

    def discard(self) -> None:
        self._file.close()  # the caller removes the file


def csv_rows(rows: list[tuple]):
    """The rows as CSV cells, a column at a time: a column of plain text is checked in C (one join,
    a few searches) and passes through untouched; only a column with a value to convert or
    neutralise is converted value by value (a check of every value in Python costs more than the
    csv module's own writing)."""
    if not rows:
        return rows
    columns = list(zip(*rows, strict=True))
    for index, column in enumerate(columns):
        if not _plain_text(column):
            columns[index] = [csv_cell(value) for value in column]
    return zip(*columns, strict=True)  # the csv module writes None as an empty cell


def _plain_text(column) -> bool:
    try:
        joined = "\0" + "\0".join(filter(None, column))
    except TypeError:  # a value that is not text
        return False
    return not any("\0" + trigger in joined for trigger in FORMULA_TRIGGERS)


def csv_cell(value):
    """What one value becomes in a CSV cell (the tests parse the file back with this contract)."""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")  # as selectors.ISO_FORMAT writes them
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else value


class XlsxWriter:
    """openpyxl's write-only mode: each row is serialised to a temporary XML file as it is appended,
    so memory stays flat whatever the row count; `close()` zips it into the .xlsx."""

    def __init__(self, path: str):
        self._path = path
        self._workbook = Workbook(write_only=True)
        self._sheet = self._workbook.create_sheet("Report")

    def write_header(self, header: list[str]) -> None:
        self._sheet.append(header)

    def write_rows(self, rows: list[tuple]) -> None:
        for row in rows:
            self._sheet.append([xlsx_cell(value) for value in row])

    def close(self) -> None:
        self._workbook.save(self._path)

    def discard(self) -> None:
        """Abandon the workbook: remove the temporary XML openpyxl writes rows to (else it stays
        until the worker process exits; there is no public API for it)."""
        self._sheet.close()  # ends the sheet's XML, which openpyxl would otherwise do when collected
        self._sheet._writer.cleanup()


def xlsx_cell(value):
    if isinstance(value, str):
        # openpyxl would store "=..." as a formula, and refuses control characters XML cannot hold;
        # XML reads a carriage return back as a newline, so it is written as one.
        text = neutralise(ILLEGAL_CHARACTERS_RE.sub("", value))
        return text.replace("\r\n", "\n").replace("\r", "\n")
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)  # Excel has no time zones; every timestamp here is UTC
    if isinstance(value, Decimal | int | float | date | datetime) or value is None:
        return value  # numbers stay numbers (sums and filters work), dates stay dates
    return str(value)  # a UUID, say


def writer_open(*, format: str, path: str, ready_rows: bool = False) -> ReportWriter:
    """`ready_rows`: see CsvWriter (XLSX rows are typed values, made safe by XlsxWriter)."""
    if format == "csv":
        return CsvWriter(path, ready_rows=ready_rows)
    return XlsxWriter(path)
