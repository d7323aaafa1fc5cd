"""Validate a whole CSV file against a mapping, then write every row or none.

Two passes over the file keep memory flat for large exports:

1. read and convert every record, collecting every error with its line, the keys seen (for
   duplicates), the referenced ids (for foreign keys) and the attribute types;
2. inside one transaction: check keys and references against the database, and only if
   nothing is wrong, convert again and insert (or, with `upsert`, update) in batches with
   SQLAlchemy Core. Any error rolls the whole import back.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Date, Engine, bindparam, delete, insert, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError

from crm.demo.removal import demo_refusal, demo_rows
from crm.importer.convert import (
    AttributeInference,
    AttributeType,
    ConversionError,
    convert,
    parse_bool,
    parse_float,
    parse_int,
)
from crm.importer.csvfile import CsvFile, CsvProblem, Record
from crm.importer.mapping import (
    ImportMapping,
    check_mapping,
    implicit_templates,
    scalar_text,
    template_fields,
)
from crm.importer.report import ImportIssue, ImportReport
from crm.importer.tables import NORMALISED, TableSpec, normalise_choice, table_spec
from crm.models import PRIMARY_CATEGORIES, Base, ChurnFeatureState

BATCH_SIZE = 2000
_IN_CHUNK = 500  # values per IN (...) lookup; well below every driver's parameter limit

# Pairs of date fields where the first may not be after the second.
DATE_ORDER: dict[str, tuple[tuple[str, str], ...]] = {
    "contacts": (("created_at", "left_at"),),
    "subscriptions": (("start_date", "renewal_date"),),
    "support_tickets": (("opened_at", "closed_at"),),
    "invoices": (("issued_at", "due_date"), ("issued_at", "paid_at")),
    "opportunities": (("created_at", "close_date"),),
}
COST_DRIVER_QUANTITIES = ("std_quantity", "actual_quantity", "std_price")
PERFORMANCE_FIELDS = ("perf_actual", "perf_target", "perf_direction")  # the performance gap needs all three

Key = tuple[Any, ...]


class _Abort(Exception):
    """Raised inside the transaction to roll it back; the report already holds the errors."""


@dataclass
class _Plan:
    """How each field of a row is produced from a CSV record."""

    spec: TableSpec
    mapping: ImportMapping
    header: list[str]
    sources: dict[str, tuple[int, str]] = field(default_factory=dict)  # field -> (index, column)
    derived: dict[str, tuple[int, str, float]] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    attr_columns: list[tuple[str, int]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def supplied(self) -> set[str]:
        """Fields whose value comes from this mapping (what --upsert overwrites)."""
        fields = set(self.sources) | set(self.derived) | set(self.constants) | set(self.mapping.defaults)
        if self.spec.name == "value_chain_activities" and "porter_category" in fields:
            fields.add("kind")
        return fields

    def column_of(self, name: str) -> str | None:
        if name in self.sources:
            return self.sources[name][1]
        if name in self.derived:
            return self.derived[name][1]
        if name in self.mapping.defaults:
            return f"defaults.{name}"
        return None


@dataclass
class _Scan:
    """What pass 1 learned about the file."""

    keys: dict[Key, int] = field(default_factory=dict)  # key -> first line
    references: dict[str, dict[Any, list[int]]] = field(default_factory=lambda: defaultdict(dict))
    unique: dict[tuple[str, ...], dict[Key, tuple[int, Key]]] = field(default_factory=dict)
    enables: dict[str, list[int]] = field(default_factory=dict)
    attributes: dict[str, AttributeInference] = field(default_factory=dict)


def import_csv(
    engine: Engine,
    *,
    table: str,
    path: Path,
    mapping: ImportMapping,
    mapping_name: str | None = None,
    upsert: bool = False,
    dry_run: bool = False,
    keep_demo: bool = False,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import one CSV file into `table` (a command name such as `usage` or a table name).

    All or nothing: the report lists every error (line, column, reason) and nothing is written
    unless the whole file is valid. With `upsert`, rows whose key already exists are updated
    (the fields the mapping supplies are overwritten, attributes merged) instead of refused.

    Args:
        engine: Database to write to (already migrated).
        table: Command name (`accounts`, `usage`, `tickets`, `nps`, `activities`, ...) or table name.
        path: CSV file; the first non-blank line is the header.
        mapping: Parsed column mapping.
        mapping_name: Where the mapping came from, for messages.
        upsert: Update rows whose key exists instead of reporting them as errors.
        dry_run: Validate everything, including against the database, but write nothing.
        keep_demo: Import even though the database holds the demo company. Without it such an
            import is refused before the file is read (so is a dry run: it would be refused).
        batch_size: Rows per INSERT/UPDATE batch.
    """
    started = time.perf_counter()
    spec = table_spec(table)
    report = ImportReport(
        table=spec.name,
        file=str(path),
        mapping=mapping_name,
        ok=False,
        dry_run=dry_run,
        upsert=upsert,
        keep_demo=keep_demo,
    )
    try:
        with engine.connect() as conn:
            demo = demo_rows(conn)
        report.demo_accounts = demo.accounts
        if demo.present and not keep_demo:
            report.demo_refused = True
            report.add_error(None, None, demo_refusal(demo) + "; nothing was written")
            return report
        _run(engine, spec, path, mapping, report, upsert=upsert, dry_run=dry_run, batch_size=batch_size)
    finally:
        report.errors.sort(key=lambda e: e.line or 0)
        report.ok = report.error_count == 0
        report.seconds = round(time.perf_counter() - started, 3)
    return report


def _run(
    engine: Engine,
    spec: TableSpec,
    path: Path,
    mapping: ImportMapping,
    report: ImportReport,
    *,
    upsert: bool,
    dry_run: bool,
    batch_size: int,
) -> None:
    where = report.mapping or "the mapping"
    for problem in check_mapping(mapping, spec):
        report.add_error(None, None, f"{where}: {problem}")
    if report.error_count:
        return
    if upsert and spec.generated_key and spec.key[0] not in mapping.columns.values():
        report.add_error(
            None, None, f"--upsert needs the key field {spec.key[0]!r} mapped from a column in {where}"
        )
        return
    try:
        with CsvFile(path, encoding=mapping.encoding, delimiter=mapping.delimiter) as csv_file:
            plan = _plan(spec, mapping, csv_file.header, csv_file.header_line, report, where)
            if report.error_count:
                return
            scan = _Scan()
            report.rows_read = _scan(plan, csv_file.records(), scan, report)
            report.blank_lines_skipped = csv_file.blank_lines
    except CsvProblem as exc:
        report.add_error(exc.line, None, exc.message)
        return
    report.attribute_types = _attribute_types(plan, scan)
    for column, inference in scan.attributes.items():
        if inference.mostly_numeric() and inference.first_text is not None:
            line, value = inference.first_text
            report.warnings.append(
                ImportIssue(
                    line=line,
                    column=column,
                    message=f"attribute {column!r} is kept as text because {inference.seen - inference.numeric} "
                    f"of {inference.seen} values are not numbers (first: {value!r}); declare "
                    f"`attribute_types: {{{column}: float}}` to have them reported as errors",
                )
            )
    # Database checks run even when the file already has errors, so one run reports everything.
    try:
        with engine.begin() as conn:
            existing = _check_database(conn, plan, scan, report, upsert=upsert)
            if report.error_count or dry_run:
                raise _Abort
            inserted, updated, earliest = _write(conn, plan, path, report, existing, batch_size)
            if report.error_count:
                raise _Abort
            report.rows_inserted, report.rows_updated = inserted, updated
            report.churn_state_dropped = _drop_stale_churn_state(conn, spec, updated, earliest)
    except _Abort:
        return
    except IntegrityError as exc:
        report.add_error(None, None, f"the database refused the rows, nothing was written: {exc.orig}")


# --------------------------------------------------------------------------- plan


def _plan(
    spec: TableSpec,
    mapping: ImportMapping,
    header: list[str],
    header_line: int,
    report: ImportReport,
    where: str,
) -> _Plan:
    plan = _Plan(spec=spec, mapping=mapping, header=header)
    positions: dict[str, int] = {}
    for i, name in enumerate(header):
        if not name:
            continue
        if name in positions:
            report.add_error(header_line, name, f"column {name!r} appears twice in the header")
        positions.setdefault(name, i)
    shown = ", ".join(repr(h) for h in header[:40]) + (", ..." if len(header) > 40 else "")

    def locate(column: str, purpose: str) -> int | None:
        if column in positions:
            return positions[column]
        close = [c for c in positions if c.lower() == column.lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        report.add_error(
            header_line,
            column,
            f"{where} {purpose}, but the CSV header has no column {column!r}{hint}; header: {shown}",
        )
        return None

    for column, target in mapping.columns.items():
        idx = locate(column, f"maps column {column!r} to {target!r}")
        if idx is not None:
            plan.sources[target] = (idx, column)
    for target, derivation in mapping.derive.items():
        idx = locate(derivation.source, f"derives {target!r} from column {derivation.source!r}")
        if idx is not None:
            plan.derived[target] = (idx, derivation.source, derivation.multiply)
    for target, default in mapping.defaults.items():
        if isinstance(default, str) and "{" in default:
            plan.templates[target] = default
        elif default is not None:
            plan.constants[target] = convert(
                spec.fields[target].kind, scalar_text(default), mapping.date_formats
            )
    for target, template in implicit_templates(spec).items():
        plan.templates.setdefault(target, template)

    # A column feeding `derive` is still an attribute under `rest`: the raw figure is kept.
    used = set(mapping.columns) | {d.source for d in mapping.derive.values()}
    mode = mapping.attributes_mode(spec)
    wanted: set[str] = set()
    if mode == "rest":
        wanted = {h for h in positions if h not in mapping.columns and h not in mapping.ignore}
    elif isinstance(mode, list):
        for column in mode:
            if locate(column, f"lists {column!r} under attributes") is not None:
                wanted.add(column)
    for column in mapping.attribute_types:
        if column not in wanted:
            report.add_error(
                header_line,
                column,
                f"{where}: attribute_types names {column!r}, which is not an attribute column",
            )
    for i, name in enumerate(header):
        if name in wanted and positions[name] == i:
            plan.attr_columns.append((name, i))
        elif name not in used and name not in mapping.ignore and name not in wanted:
            plan.ignored.append(name or f"<unnamed column {i + 1}>")
    report.ignored_columns = list(plan.ignored)
    return plan


# --------------------------------------------------------------------------- rows


def _translate(mapping: ImportMapping, name: str, cell: str) -> str:
    table = mapping.values.get(name)
    if table is not None and cell in table:
        return scalar_text(table[cell])
    return cell


def _convert_row(plan: _Plan, record: Record, report: ImportReport) -> tuple[dict[str, Any], bool]:
    """The row for the table (all columns but `attributes`) and whether it is free of errors.

    A row with errors is still returned with the fields that did convert, so that its key and
    references are checked too and one run reports every problem.
    """
    spec, mapping, line, cells = plan.spec, plan.mapping, record.line, record.cells
    before = report.error_count
    row: dict[str, Any] = {}
    texts: dict[str, str] = {}
    failed: set[str] = set()  # fields whose cell did not convert (already reported)
    for name, (idx, column) in plan.sources.items():
        cell = _translate(mapping, name, cells[idx].strip())
        if not cell:
            continue
        try:
            row[name] = convert(spec.fields[name].kind, cell, mapping.date_formats)
        except ConversionError as exc:
            report.add_error(line, column, f"{name}: {exc}")
            failed.add(name)
            continue
        texts[name] = cell
    for name, (idx, column, factor) in plan.derived.items():
        cell = cells[idx].strip()
        if not cell:
            continue
        try:
            number = round(parse_float(cell) * factor, 9)
        except ConversionError as exc:
            report.add_error(line, column, f"{name} (derived): {exc}")
            failed.add(name)
            continue
        row[name] = round(number) if spec.fields[name].kind == "int" else number
        texts[name] = str(row[name])
    for name, value in plan.constants.items():
        if row.get(name) is None and name not in failed:
            row[name] = list(value) if isinstance(value, list) else value
    for name, template in plan.templates.items():
        if row.get(name) is not None or name in failed:
            continue
        try:
            rendered = template.format_map(texts)
        except (KeyError, IndexError):
            # A placeholder's cell is blank (the field is then blank too) or failed (reported).
            if any(p in failed for p in template_fields(template)):
                failed.add(name)
            continue
        try:
            row[name] = convert(spec.fields[name].kind, rendered, mapping.date_formats)
        except ConversionError as exc:
            report.add_error(line, plan.column_of(name), f"{name}: {exc}")
            failed.add(name)
    if spec.name == "value_chain_activities" and row.get("kind") is None and row.get("porter_category"):
        category = normalise_choice(str(row["porter_category"]))
        row["kind"] = "primary" if category in PRIMARY_CATEGORIES else "support"

    for name in spec.mappable_fields:
        fs = spec.fields[name]
        if row.get(name) is not None or name in failed:
            continue
        if fs.primary_key and spec.generated_key:
            if name in plan.sources:
                # Mixing given and database-assigned ids in one file hides re-imports; refuse.
                report.add_error(
                    line,
                    plan.column_of(name),
                    f"{name} is blank; give every row an id, or leave `{name}` unmapped to let "
                    "the database number the rows",
                )
            row.pop(name, None)  # the database assigns it
        elif fs.has_default:
            row[name] = fs.model_default()
        elif fs.nullable:
            row[name] = None
        else:
            source = plan.column_of(name)
            reason = f"column {source!r} is blank" if source else "it has no value"
            report.add_error(line, source, f"{name} is required but {reason}")
    for name, value in list(row.items()):
        _check_value(plan, name, value, row, line, report)
    if report.error_count == before:
        _check_row(plan, row, line, report)
    return row, report.error_count == before


def _check_value(
    plan: _Plan, name: str, value: Any, row: dict[str, Any], line: int, report: ImportReport
) -> None:
    if value is None:
        return
    fs = plan.spec.fields[name]
    normalise = NORMALISED.get((plan.spec.name, name))
    if normalise is not None:
        value = row[name] = normalise(value)
    if fs.choices is not None and value not in fs.choices:
        found = fs.choice_lookup.get(normalise_choice(str(value)))
        if found is None:
            report.add_error(
                line,
                plan.column_of(name),
                f"{name}: {value!r} is not one of {', '.join(fs.choices)}; translate it under "
                f"`values: {{{name}: {{{json.dumps(str(value))}: ...}}}}` in the mapping",
            )
            return
        row[name] = found
    if fs.kind in ("int", "float"):
        if fs.minimum is not None and value < fs.minimum:
            report.add_error(
                line, plan.column_of(name), f"{name}: {value!r} is below the minimum {fs.minimum:g}"
            )
        elif fs.maximum is not None and value > fs.maximum:
            report.add_error(
                line, plan.column_of(name), f"{name}: {value!r} is above the maximum {fs.maximum:g}"
            )
    elif fs.max_length is not None and len(value) > fs.max_length:
        report.add_error(
            line, plan.column_of(name), f"{name}: {len(value)} characters, longer than {fs.max_length}"
        )


def _check_row(plan: _Plan, row: dict[str, Any], line: int, report: ImportReport) -> None:
    spec = plan.spec
    for earlier, later in DATE_ORDER.get(spec.name, ()):
        if row.get(earlier) is not None and row.get(later) is not None and row[later] < row[earlier]:
            report.add_error(
                line,
                plan.column_of(later),
                f"{later} {row[later].isoformat()} is before {earlier} {row[earlier].isoformat()}",
            )
    if spec.name != "value_chain_activities":
        return
    expected = "primary" if row["porter_category"] in PRIMARY_CATEGORIES else "support"
    if row["kind"] != expected:
        report.add_error(
            line,
            plan.column_of("kind"),
            f"kind {row['kind']!r} does not match porter_category {row['porter_category']!r}, "
            f"which is a {expected} activity",
        )
    given = [q for q in COST_DRIVER_QUANTITIES if row.get(q) is not None]
    if given and len(given) < len(COST_DRIVER_QUANTITIES):
        missing = [q for q in COST_DRIVER_QUANTITIES if q not in given]
        report.add_error(
            line,
            plan.column_of(missing[0]),
            f"cost driver fields come together: {', '.join(COST_DRIVER_QUANTITIES)}; "
            f"missing {', '.join(missing)}",
        )
    given = [q for q in PERFORMANCE_FIELDS if row.get(q) is not None]
    if given and len(given) < len(PERFORMANCE_FIELDS):
        missing = [q for q in PERFORMANCE_FIELDS if q not in given]
        report.add_error(
            line,
            plan.column_of(missing[0]),
            f"performance fields come together: {', '.join(PERFORMANCE_FIELDS)}; missing {', '.join(missing)}",
        )
    if row.get("perf_target") == 0:
        report.add_error(
            line, plan.column_of("perf_target"), "perf_target is 0: the performance gap divides by the target"
        )
    if row["kind"] == "primary" and row.get("enables"):
        report.add_error(
            line, plan.column_of("enables"), "enables is for support activities; this one is primary"
        )


def _scan(plan: _Plan, records: Iterator[Record], scan: _Scan, report: ImportReport) -> int:
    """Pass 1: convert every record, collecting errors, keys, references and attribute types."""
    spec = plan.spec
    width = len(plan.header)
    overrides = plan.mapping.attribute_types
    for column, _ in plan.attr_columns:
        scan.attributes[column] = AttributeInference()
    fk_fields = [fk.field for fk in spec.foreign_keys]
    count = 0
    for record in records:
        count += 1
        if len(record.cells) != width:
            report.add_error(
                record.line,
                None,
                f"expected {width} fields as in the header, found {len(record.cells)}",
            )
            continue
        for column, idx in plan.attr_columns:
            cell = record.cells[idx].strip()
            if column in overrides:
                if cell:
                    try:
                        convert(overrides[column], cell)
                    except ConversionError as exc:
                        report.add_error(record.line, column, f"attribute {column}: {exc}")
            else:
                scan.attributes[column].add(cell, record.line)
        row, _ = _convert_row(plan, record, report)
        if all(row.get(k) is not None for k in spec.key):
            key = tuple(row[k] for k in spec.key)
            first = scan.keys.setdefault(key, record.line)
            if first != record.line:
                report.add_error(
                    record.line,
                    plan.column_of(spec.key[-1]),
                    f"duplicate {_key_text(spec, key)} in the file (first on line {first})",
                )
        for name in fk_fields:
            value = row.get(name)
            if value is not None:
                scan.references[name].setdefault(value, []).append(record.line)
        for fields in spec.unique_together:
            if any(row.get(f) is None for f in fields):
                continue
            values = tuple(row[f] for f in fields)
            seen = scan.unique.setdefault(fields, {})
            own_key = tuple(row.get(k) for k in spec.key)
            if values in seen:
                report.add_error(
                    record.line,
                    plan.column_of(fields[0]),
                    f"{' + '.join(fields)} {values!r} repeats line {seen[values][0]}; must be unique",
                )
            else:
                seen[values] = (record.line, own_key)
        if spec.name == "value_chain_activities":
            for target in row.get("enables") or ():
                scan.enables.setdefault(target, []).append(record.line)
    return count


def _show(value: Any) -> str:
    """A value as a user wrote it: quoted text and numbers, ISO dates."""
    if isinstance(value, dt.date):
        return value.isoformat()
    return repr(value)


def _key_text(spec: TableSpec, key: Key) -> str:
    return " + ".join(f"{k} {_show(v)}" for k, v in zip(spec.key, key, strict=True))


def _attribute_types(plan: _Plan, scan: _Scan) -> dict[str, AttributeType]:
    overrides = plan.mapping.attribute_types
    return {
        column: overrides[column] if column in overrides else scan.attributes[column].type
        for column, _ in plan.attr_columns
    }


# --------------------------------------------------------------------------- database


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _check_database(
    conn: Connection, plan: _Plan, scan: _Scan, report: ImportReport, *, upsert: bool
) -> set[Key]:
    """Keys already present (updated with upsert, errors without), unknown references, uniqueness."""
    spec = plan.spec
    table = spec.table
    existing: set[Key] = set()
    if scan.keys:
        if len(spec.key) == 1:
            existing = {(v,) for v in _existing_in(conn, spec.name, spec.key[0], (k[0] for k in scan.keys))}
        else:
            first = table.c[spec.key[0]]
            cols = [table.c[k] for k in spec.key]
            firsts = sorted({k[0] for k in scan.keys}, key=repr)
            for chunk in _chunks(firsts):
                rows = conn.execute(select(*cols).where(first.in_(chunk)))
                existing.update(tuple(r) for r in rows if tuple(r) in scan.keys)
        if not upsert:
            for key in sorted(existing, key=lambda k: scan.keys[k]):
                report.add_error(
                    scan.keys[key],
                    plan.column_of(spec.key[-1]),
                    f"{_key_text(spec, key)} already exists in the database "
                    "(use --upsert to update existing rows)",
                )
    for fk in spec.foreign_keys:
        referenced = scan.references.get(fk.field, {})
        if not referenced:
            continue
        known = _existing_in(conn, fk.table, fk.column, referenced)
        for value, lines in referenced.items():
            if value in known:
                continue
            for line in lines:
                report.add_error(
                    line,
                    plan.column_of(fk.field),
                    f"{fk.field} {value!r} does not exist in {fk.table} (import {fk.table} first)",
                )
    for fields, seen in scan.unique.items():
        cols = [table.c[f] for f in fields]
        key_cols = [table.c[k] for k in spec.key]
        values = sorted(seen, key=repr)
        for chunk in _chunks(values):
            rows = conn.execute(select(*cols, *key_cols).where(tuple_(*cols).in_(chunk)))
            for r in rows:
                values_t, key_t = tuple(r[: len(fields)]), tuple(r[len(fields) :])
                line, own_key = seen[values_t]
                if key_t != own_key:
                    report.add_error(
                        line,
                        plan.column_of(fields[0]),
                        f"{' + '.join(fields)} {values_t!r} already exists in the database as "
                        f"{_key_text(spec, key_t)}",
                    )
    if scan.enables:
        file_ids = {k[0] for k in scan.keys}
        known = _existing_in(conn, spec.name, "id", scan.enables) | file_ids
        for target, lines in scan.enables.items():
            if target not in known:
                for line in lines:
                    report.add_error(
                        line,
                        plan.column_of("enables"),
                        f"enables {target!r}: no such activity in the file or the database",
                    )
    return existing


def _existing_in(conn: Connection, table_name: str, column: str, values: Iterable[Any]) -> set[Any]:
    table = Base.metadata.tables[table_name]
    col = table.c[column]
    found: set[Any] = set()
    for chunk in _chunks(sorted(set(values), key=repr)):
        found.update(conn.scalars(select(col).where(col.in_(chunk))))
    return found


def _write(
    conn: Connection,
    plan: _Plan,
    path: Path,
    report: ImportReport,
    existing: set[Key],
    batch_size: int,
) -> tuple[int, int, dt.date | None]:
    """Pass 2: convert again (the file was valid) and write in batches; returns (inserted,
    updated, the earliest value of any date field written)."""
    spec = plan.spec
    types = report.attribute_types
    attr_mode: Literal["rest", "none"] | list[str] = plan.mapping.attributes_mode(spec)
    with_attributes = spec.has_attributes
    update_fields = sorted(plan.supplied - set(spec.key))
    if with_attributes and attr_mode != "none":
        update_fields.append("attributes")
    inserted = updated = 0
    to_insert: list[dict[str, Any]] = []
    to_update: list[dict[str, Any]] = []
    explicit_ids = False
    # dates are only looked at where they can make the kept churn feature state wrong
    churn_events = spec.name in CHURN_EVENT_TABLES
    date_fields = [c.name for c in spec.table.columns if isinstance(c.type, Date)] if churn_events else []
    earliest: dt.date | None = None

    def flush() -> None:
        nonlocal inserted, updated
        if to_insert:
            conn.execute(insert(spec.table), to_insert)
            inserted += len(to_insert)
            to_insert.clear()
        if to_update:
            _update(conn, spec, to_update, update_fields, {c for c, _ in plan.attr_columns})
            updated += len(to_update)
            to_update.clear()

    with CsvFile(path, encoding=plan.mapping.encoding, delimiter=plan.mapping.delimiter) as csv_file:
        if csv_file.header != plan.header:
            report.add_error(None, None, "the file changed while importing; nothing was written")
            return 0, 0, None
        for record in csv_file.records():
            ok = len(record.cells) == len(plan.header)
            row, ok = _convert_row(plan, record, report) if ok else ({}, False)
            if not ok:
                report.add_error(record.line, None, "the file changed while importing; nothing was written")
                return 0, 0, None
            if with_attributes:
                row["attributes"] = {
                    column: _attribute(types[column], record.cells[idx].strip())
                    for column, idx in plan.attr_columns
                    if record.cells[idx].strip()
                }
            for name in date_fields:
                value = row.get(name)
                if isinstance(value, dt.date) and (earliest is None or value < earliest):
                    earliest = value
            key = tuple(row.get(k) for k in spec.key)
            if key in existing:
                to_update.append(row)
            else:
                explicit_ids = explicit_ids or spec.key[0] in row
                to_insert.append(row)
            if len(to_insert) >= batch_size or len(to_update) >= batch_size:
                flush()
    flush()
    if explicit_ids and spec.generated_key and conn.dialect.name == "postgresql" and inserted:
        # Explicit ids do not advance a serial sequence; without this the next ORM insert collides.
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{spec.name}', '{spec.key[0]}'), "
                f"(SELECT MAX({spec.key[0]}) FROM {spec.name}))"
            )
        )
    return inserted, updated, earliest


# Event tables behind the churn features: rows dated on or before the kept feature state's
# date, or rows changed in place, make that state wrong (tools/churn/state.py).
CHURN_EVENT_TABLES = frozenset(
    {
        "usage_weekly",
        "interactions",
        "support_tickets",
        "invoices",
        "nps_responses",
        "subscriptions",
        "contacts",
    }
)


def _drop_stale_churn_state(
    conn: Connection, spec: TableSpec, updated: int, earliest: dt.date | None
) -> str | None:
    """Drop the kept churn feature state when this import wrote what it cannot follow:
    updated rows, or rows with a date on or before the state's date. Returns why, or None."""
    if spec.name not in CHURN_EVENT_TABLES:
        return None
    kept = conn.execute(select(ChurnFeatureState.as_of)).scalars().all()
    if not kept:
        return None
    as_of = min(kept)
    if updated:
        reason = f"{updated} {spec.name} row(s) were updated in place"
    elif earliest is not None and earliest <= as_of:
        reason = f"{spec.name} rows dated {earliest}, on or before the state's date {as_of}, were added"
    else:
        return None
    conn.execute(delete(ChurnFeatureState))
    return reason


def _attribute(kind: AttributeType, cell: str) -> Any:
    """Typed value of a non-blank attribute cell (pass 1 proved it parses)."""
    if kind == "int":
        return parse_int(cell)
    if kind == "float":
        return parse_float(cell)
    if kind == "bool":
        return parse_bool(cell)
    return cell


def _update(
    conn: Connection, spec: TableSpec, rows: list[dict[str, Any]], fields: list[str], attr_columns: set[str]
) -> None:
    table = spec.table
    if not fields:
        return  # the mapping supplies only the key: nothing to overwrite
    if "attributes" in fields:
        key_col = table.c[spec.key[0]]
        ids = [r[spec.key[0]] for r in rows]
        current: dict[Any, Any] = {
            key: attrs
            for key, attrs in conn.execute(select(key_col, table.c.attributes).where(key_col.in_(ids)))
        }
        for r in rows:
            # Keys from this file's columns replace (a blank cell removes); other keys are kept.
            merged = {k: v for k, v in (current.get(r[spec.key[0]]) or {}).items() if k not in attr_columns}
            merged.update(r["attributes"])
            r["attributes"] = merged
    stmt = (
        update(table)
        .where(*[table.c[k] == bindparam(f"k_{k}") for k in spec.key])
        .values({f: bindparam(f"v_{f}") for f in fields})
    )
    params = [{**{f"k_{k}": r[k] for k in spec.key}, **{f"v_{f}": r.get(f) for f in fields}} for r in rows]
    conn.execute(stmt, params)
