"""CSV cells that a spreadsheet would not run: every CSV Docket writes goes through `csv_writer`.

A cell starting with =, +, -, @, a tab or a carriage return is a formula to Excel, LibreOffice and Google
Sheets (`=HYPERLINK(...)` can send data away when clicked). Such a cell is written with a leading apostrophe,
which the spreadsheet shows as text. Imports undo exactly that, so an export still re-imports unchanged: a
cell of apostrophes followed by a formula character loses one apostrophe on the way in, and gains one on the
way out.
"""

import csv
import re
from typing import Any

_FORMULA = re.compile(r"^'*[=+\-@\t\r]")
_NEUTRALISED = re.compile(r"^'+[=+\-@\t\r]")


def cell_for_spreadsheet(value: Any) -> Any:
    """`value` as a CSV cell no spreadsheet runs; numbers and other non-text values stay as they are."""
    if isinstance(value, str) and _FORMULA.match(value):
        return "'" + value
    return value


def cell_from_spreadsheet(value: Any) -> Any:
    """The text a cell held before `cell_for_spreadsheet`: the inverse, for imports."""
    if isinstance(value, str) and _NEUTRALISED.match(value):
        return value[1:]
    return value


class _SafeWriter:
    def __init__(self, writer) -> None:
        self._writer = writer

    def writerow(self, row) -> Any:
        return self._writer.writerow([cell_for_spreadsheet(cell) for cell in row])

    def writerows(self, rows) -> None:
        for row in rows:
            self.writerow(row)


class _SafeDictWriter(csv.DictWriter):
    def _dict_to_list(self, rowdict):
        return [cell_for_spreadsheet(cell) for cell in super()._dict_to_list(rowdict)]


def csv_writer(out, **kwargs) -> _SafeWriter:
    """csv.writer whose rows are neutralised cell by cell."""
    return _SafeWriter(csv.writer(out, **kwargs))


def csv_dict_writer(out, fieldnames, **kwargs) -> csv.DictWriter:
    """csv.DictWriter whose rows (the header too) are neutralised cell by cell."""
    return _SafeDictWriter(out, fieldnames, **kwargs)
