"""CSV import with a column-mapping file (SPEC §4 "Import").

`load_mapping` reads and checks a mapping YAML; `import_csv` validates the whole file and
writes every row or none, returning an `ImportReport`. See docs/IMPORT.md.
"""

from __future__ import annotations

from crm.importer.loader import import_csv
from crm.importer.mapping import ImportMapping, MappingError, load_mapping, parse_mapping
from crm.importer.report import ImportIssue, ImportReport
from crm.importer.tables import COMMANDS, table_spec

__all__ = [
    "COMMANDS",
    "ImportIssue",
    "ImportMapping",
    "ImportReport",
    "MappingError",
    "import_csv",
    "load_mapping",
    "parse_mapping",
    "table_spec",
]
