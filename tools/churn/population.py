"""Which accounts a churn model may learn from: the demo company or imported accounts, never both.

A database can hold both when accounts were imported with `--keep-demo` (issue #16). One model
over the two populations learns to tell them apart and reports an inflated AUC, so training
then uses the imported accounts only and the report says so (`population`, `population_note`).
Refusing instead would leave a user who kept the demo on purpose without any model; their own
accounts are the population they asked about.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm.demo.removal import IMPORTED_POPULATION
from crm.models import DEMO_ORIGIN, Account, ChurnModel
from tools.churn.features import AccountScope
from tools.churn.schemas import ChurnModelReport, Population


@dataclass(frozen=True)
class TrainingPopulation:
    """The accounts to train on, as a scope for the feature queries, and what to tell the user."""

    name: Population
    scope: AccountScope
    accounts: int
    demo_left_out: int = 0

    @property
    def note(self) -> str | None:
        if not self.demo_left_out:
            return None
        return (
            f"trained on the {self.accounts:,} imported accounts only; the {self.demo_left_out:,} "
            "demo-company accounts in the same database were left out (one model over both "
            "populations would mostly learn which is which). `valuechain demo remove` deletes them"
        )


def training_population(session: Session) -> TrainingPopulation:
    """Imported accounts if there are any (the demo's are then left out), else the demo company."""
    counts = {
        o: int(n) for o, n in session.execute(select(Account.origin, func.count()).group_by(Account.origin))
    }
    demo = counts.pop(DEMO_ORIGIN, 0)
    imported = sum(counts.values())
    if imported and demo:
        scope = AccountScope(where=(Account.origin != DEMO_ORIGIN,))
        return TrainingPopulation(
            name=IMPORTED_POPULATION, scope=scope, accounts=imported, demo_left_out=demo
        )
    if demo:
        return TrainingPopulation(name="demo", scope=AccountScope(), accounts=demo)
    return TrainingPopulation(name=IMPORTED_POPULATION, scope=AccountScope(), accounts=imported)


def record_population(
    session: Session, report: ChurnModelReport, population: TrainingPopulation
) -> ChurnModelReport:
    """Put the population on the report and on the stored model's metrics (which `churn report`
    shows and `valuechain demo remove` reads to keep models trained on imported accounts)."""
    report = report.model_copy(update={"population": population.name, "population_note": population.note})
    row = session.get(ChurnModel, report.model_version)
    if row is not None:
        row.metrics = report.model_dump(mode="json")
        session.flush()
    return report
