"""JSON schemas of the case files, exported from their pydantic models to `evals/schema/`.

`valuechain eval schema` writes them; `--check` fails when a committed schema is out of date
(tests/test_evals_cases.py runs the check). Editors validate YAML case files against them, e.g.
with a ``# yaml-language-server: $schema=../schema/tasks.schema.json`` first line.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from evals.faithfulness import FaithfulnessFile
from evals.injection import InjectionFile
from evals.report import ThresholdFile
from evals.selection import CaseFile
from evals.tasks import TaskFile
from evals.tools_suite import ToolCaseFile
from knowledge.evaluate import RetrievalSuite

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"


def models() -> dict[str, type[BaseModel]]:
    return {
        "tools": ToolCaseFile,
        "selection": CaseFile,
        "retrieval": RetrievalSuite,
        "tasks": TaskFile,
        "faithfulness": FaithfulnessFile,
        "injection": InjectionFile,
        "thresholds": ThresholdFile,
    }


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def export(directory: Path = SCHEMA_DIR, *, check: bool = False) -> list[Path]:
    """Write every schema (or, with `check`, return the ones whose file differs or is missing)."""
    stale = []
    directory.mkdir(parents=True, exist_ok=True)
    for name, model in models().items():
        path = directory / f"{name}.schema.json"
        text = render(model)
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            stale.append(path)
            if not check:
                path.write_text(text, encoding="utf-8")
    return stale
