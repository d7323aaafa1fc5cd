"""The column-mapping file: schema, YAML loading and validation against a table.

A mapping says which CSV column feeds which model field, how to translate values, which
constants to use for fields the CSV lacks, and (for accounts) which columns become
`attributes`. See docs/IMPORT.md and examples/mappings/*.yaml.
"""

from __future__ import annotations

import difflib
import re
import string
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crm.importer.convert import ConversionError, convert
from crm.importer.tables import IMPLICIT_TEMPLATES, TableSpec

Scalar = str | int | float | bool | None


class _MappingLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: `Yes`, `No`, `on`, `off` stay strings.

    CRM exports are full of Yes/No columns; YAML 1.1 would silently turn a mapping key
    `Yes:` into the boolean True and it would never match the CSV text "Yes".
    """


_MappingLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_MappingLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class Derivation(BaseModel):
    """A numeric field computed from one CSV column: `value = float(column) * multiply`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="from", description="CSV column holding a number")
    multiply: float = Field(default=1.0, description="Factor, e.g. 12 to turn monthly into annual")


class ImportMapping(BaseModel):
    """A column-mapping file (YAML)."""

    model_config = ConfigDict(extra="forbid")

    table: str | None = Field(
        default=None, description="Table this mapping is for; checked against the command"
    )
    columns: dict[str, str] = Field(default_factory=dict, description="CSV column -> model field")
    values: dict[str, dict[str, Scalar]] = Field(
        default_factory=dict, description="Per field: CSV text -> stored value (null = blank)"
    )
    defaults: dict[str, Scalar] = Field(
        default_factory=dict,
        description="Per field: constant used when no column feeds it or the cell is blank; "
        "text may contain {field} placeholders",
    )
    derive: dict[str, Derivation] = Field(
        default_factory=dict, description="Per numeric field: {from: column, multiply: k}"
    )
    attributes: Literal["rest", "none"] | list[str] | None = Field(
        default=None,
        description="tables with attributes (accounts, opportunities, sales-team): 'rest' (default) puts "
        "every unmapped column into attributes, "
        "a list names the columns, 'none' ignores them",
    )
    attribute_types: dict[str, Literal["int", "float", "bool", "str"]] = Field(
        default_factory=dict, description="Override the inferred type of an attribute column"
    )
    ignore: list[str] = Field(default_factory=list, description="CSV columns to drop without a report")
    date_formats: list[str] = Field(
        default_factory=list, description="strptime formats tried before the built-in ones"
    )
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"

    @field_validator("values", mode="before")
    @classmethod
    def _text_keys(cls, raw: Any) -> Any:
        # `1: low` in YAML gives an int key; the CSV cell is the text "1".
        if isinstance(raw, dict):
            return {
                f: {str(k): v for k, v in m.items()} if isinstance(m, dict) else m for f, m in raw.items()
            }
        return raw

    @field_validator("columns", mode="before")
    @classmethod
    def _text_columns(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {str(k): v for k, v in raw.items()}
        return raw

    def attributes_mode(self, spec: TableSpec) -> Literal["rest", "none"] | list[str]:
        if self.attributes is None:
            return "rest" if spec.has_attributes else "none"
        return self.attributes


class MappingError(ValueError):
    """The mapping file is unreadable or does not fit the table; `problems` lists every issue."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def load_mapping(path: Path) -> ImportMapping:
    """Read and schema-check a mapping file; raises MappingError with readable problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(str(path), [f"cannot read mapping file: {exc.strerror or exc}"]) from None
    return parse_mapping(text, source=str(path))


def parse_mapping(text: str, *, source: str = "<mapping>") -> ImportMapping:
    try:
        data = yaml.load(text, Loader=_MappingLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise MappingError(source, [f"not valid YAML: {exc}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MappingError(source, ["expected a YAML mapping (key: value lines) at the top level"])
    try:
        return ImportMapping.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                valid = ", ".join(ImportMapping.model_fields)
                msg = f"unknown key (valid keys: {valid})"
            problems.append(f"{where}: {msg}" if where else msg)
        raise MappingError(source, problems) from None


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def template_fields(template: str) -> list[str]:
    """The {placeholders} of a default such as "Customer {id}"; raises ValueError if malformed."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def check_mapping(mapping: ImportMapping, spec: TableSpec) -> list[str]:
    """Every problem that makes `mapping` unusable for `spec`'s table (empty list = fine)."""
    problems: list[str] = []
    valid = spec.mappable_fields
    valid_text = ", ".join(valid)

    def check_field(where: str, name: str) -> bool:
        if name == "attributes" and spec.has_attributes:
            problems.append(
                f"{where}: 'attributes' is filled from unmapped columns; use `attributes: rest` "
                "or a list of columns instead"
            )
            return False
        if name not in spec.fields:
            problems.append(
                f"{where}: unknown field {name!r} for table {spec.name}{_suggest(name, valid)}; "
                f"valid fields: {valid_text}"
            )
            return False
        return True

    if mapping.table is not None and mapping.table not in (spec.name, spec.command):
        problems.append(
            f"table: this mapping is for {mapping.table!r} but the import is into {spec.name!r} "
            f"(`valuechain import {spec.command}`)"
        )

    targets: dict[str, str] = {}
    for column, target in mapping.columns.items():
        if not check_field(f"columns.{column}", target):
            continue
        if target in targets:
            problems.append(
                f"columns: field {target!r} is fed by two columns, {targets[target]!r} and {column!r}"
            )
        targets[target] = column
    for name in mapping.values:
        if check_field(f"values.{name}", name) and name not in targets:
            problems.append(
                f"values.{name}: no column feeds {name!r}; translations apply to mapped columns only"
            )
    for name, derivation in mapping.derive.items():
        if not check_field(f"derive.{name}", name):
            continue
        if spec.fields[name].kind not in ("int", "float"):
            problems.append(f"derive.{name}: only numeric fields can be derived ({name!r} is not)")
        if name in targets:
            problems.append(f"derive.{name}: {name!r} is also fed by column {targets[name]!r}; choose one")
        if derivation.source in mapping.ignore:
            problems.append(f"derive.{name}: column {derivation.source!r} is also listed in `ignore`")
    supplied = set(targets) | set(mapping.derive) | set(mapping.defaults)
    for name, default in mapping.defaults.items():
        if not check_field(f"defaults.{name}", name):
            continue
        if isinstance(default, str) and "{" in default:
            try:
                placeholders = template_fields(default)
            except ValueError as exc:
                problems.append(f"defaults.{name}: bad template {default!r}: {exc}")
                continue
            for ph in placeholders:
                if ph == name or ph not in spec.fields or ph not in (set(targets) | set(mapping.derive)):
                    problems.append(
                        f"defaults.{name}: placeholder {{{ph}}} must name a field fed by a column "
                        f"(fed fields: {', '.join(sorted(set(targets) | set(mapping.derive))) or 'none'})"
                    )
            continue
        if default is None:
            continue
        kind = spec.fields[name].kind
        try:
            convert(kind, scalar_text(default), mapping.date_formats)
        except ConversionError as exc:
            problems.append(f"defaults.{name}: {exc}")

    for column in mapping.columns:
        if column in mapping.ignore:
            problems.append(f"columns.{column}: column is mapped and also listed in `ignore`")

    mode = mapping.attributes_mode(spec)
    if not spec.has_attributes:
        if mapping.attributes not in (None, "none"):
            problems.append(
                f"attributes: only accounts, opportunities and sales agents have an attributes field; "
                f"unmapped columns of "
                f"{spec.name} are reported and ignored (remove `attributes`)"
            )
        if mapping.attribute_types:
            problems.append(f"attribute_types: {spec.name} has no attributes field")
    elif isinstance(mode, list):
        for column in mode:
            if column in mapping.columns:
                problems.append(f"attributes: column {column!r} is already mapped to a field")

    if not spec.generated_key:
        for key in spec.key:
            if key in targets or (len(spec.key) > 1 and key in mapping.defaults):
                continue
            problems.append(
                f"columns: table {spec.name} needs its key field {key!r} from a CSV column; "
                f"add a line `<your column>: {key}` under `columns`"
            )
    if len(spec.key) == 1 and spec.key[0] in mapping.defaults:
        problems.append(
            f"defaults.{spec.key[0]}: the key field cannot be a constant (every row needs its own)"
        )
    for name in spec.required_fields():
        if name not in supplied and name not in spec.key:
            problems.append(
                f"field {name!r} is required for {spec.name}: map a column to it under `columns` "
                "or give a constant under `defaults`"
            )
    for name, template in implicit_templates(spec).items():  # e.g. a ticket's day from its timestamp
        fed = [f for f in template_fields(template) if f in supplied]
        if not spec.fields[name].nullable and name not in supplied and not fed:
            problems.append(
                f"field {name!r} is required for {spec.name}: map a column to it (or to "
                f"{' / '.join(repr(f) for f in template_fields(template))}) under `columns`"
            )
    return problems


def implicit_templates(spec: TableSpec) -> dict[str, str]:
    return {f: t for (table, f), t in IMPLICIT_TEMPLATES.items() if table == spec.name}


def scalar_text(value: Scalar) -> str:
    """The text form of a YAML scalar, as if it had been read from a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
