"""A synthetic bank-customer churn CSV shaped like the public "bank churn" (Churn_Modelling) file.

    .venv/bin/python -m bench.bank_churn_synth out.csv [--rows 10000] [--seed 0]

Columns: CustomerId, Surname, CreditScore, Geography, Gender, Age, Tenure, Balance,
NumOfProducts, HasCrCard, IsActiveMember, EstimatedSalary, Exited (1 = churned).

Marginals roughly follow the real file (France 50 % / Germany 25 % / Spain 25 %; products 1:
51 %, 2: 46 %, 3: 2.7 %, 4: 0.6 %; about 36 % zero balances; ~20 % churn), and so do its
non-linear effects, which is the point: churn peaks for ages 45–60 (a hump, not a line), 3–4
products churn very often and 2 products rarely (not monotone in the count), inactive members
churn more — more so when older —, Germany and women more. CreditScore, Tenure, HasCrCard and
EstimatedSalary carry (almost) nothing. Surname has ~2,900 distinct values and CustomerId is
unique: a model should leave both out. The intercept is solved so the expected churn rate is
20.4 %; the same seed gives the same file.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

SYLLABLES = (
    "al", "an", "ar", "ba", "be", "bo", "ca", "ch", "co", "da", "de", "do", "el", "en", "er", "fa",
    "fe", "ga", "go", "ha", "he", "ho", "il", "in", "ka", "ke", "ko", "la", "le", "li", "lo", "ma",
    "me", "mi", "mo", "na", "ne", "ni", "no", "ol", "on", "or", "pa", "pe", "ra", "re", "ri", "ro",
    "sa", "se", "so", "ta", "te", "to", "va", "ve", "wa", "ya", "za", "zo",
)  # fmt: skip
CHURN_RATE = 0.204


def _surnames(rng: np.random.Generator, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        parts = rng.choice(SYLLABLES, size=int(rng.integers(2, 4)))
        names.add("".join(parts).capitalize())
    return sorted(names)


def _solve_intercept(logit: np.ndarray, rate: float) -> float:
    lo, hi = -20.0, 20.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(logit + mid)))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def generate(rows: int = 10_000, seed: int = 0) -> list[dict[str, object]]:
    """The rows of the file (deterministic in `seed`)."""
    return generate_with_truth(rows, seed)[0]


def generate_with_truth(rows: int = 10_000, seed: int = 0) -> tuple[list[dict[str, object]], np.ndarray]:
    """The rows and each row's true churn probability (what an ideal model would predict)."""
    rng = np.random.default_rng(seed)
    names = _surnames(rng, 2900)
    zipf = 1.0 / np.arange(1, len(names) + 1) ** 0.6
    surname = rng.choice(len(names), size=rows, p=zipf / zipf.sum())
    geography = rng.choice(["France", "Germany", "Spain"], size=rows, p=[0.5, 0.25, 0.25])
    female = rng.random(rows) < 0.45
    age = np.clip(np.round(np.exp(rng.normal(np.log(37.0), 0.26, rows))), 18, 92).astype(int)
    tenure = rng.integers(0, 11, rows)
    credit = np.clip(np.round(rng.normal(650, 97, rows)), 350, 850).astype(int)
    zero_balance = (rng.random(rows) < 0.48) & (geography != "Germany")
    balance = np.where(
        zero_balance, 0.0, np.round(np.clip(rng.normal(119_800, 30_000, rows), 3_000, 250_000), 2)
    )
    products = rng.choice([1, 2, 3, 4], size=rows, p=[0.508, 0.459, 0.027, 0.006])
    has_card = (rng.random(rows) < 0.70).astype(int)
    active = (rng.random(rows) < 0.515).astype(int)
    salary = np.round(rng.uniform(11.58, 199_992.48, rows), 2)

    age_hump = 2.6 * np.exp(-(((age - 53.0) / 9.0) ** 2)) + 0.9 * ((age >= 40) & (age < 45))
    young = -0.9 * (age < 30)
    product_effect = np.select([products == 1, products == 2, products == 3], [0.0, -1.6, 2.6], 5.5)
    inactive = 0.75 * (1 - active) + 0.7 * (1 - active) * (age >= 45)
    logit = (
        age_hump
        + young
        + product_effect
        + inactive
        + 0.75 * (geography == "Germany")
        + 0.5 * female
        + 0.25 * (balance > 0)
        - 0.0006 * (credit - 650)
    )
    logit = logit + _solve_intercept(logit, CHURN_RATE)
    truth = 1 / (1 + np.exp(-logit))
    exited = (rng.random(rows) < truth).astype(int)
    ids = 15_565_701 + np.sort(rng.choice(250_000, size=rows, replace=False))
    data: list[dict[str, object]] = [
        {
            "CustomerId": int(ids[i]),
            "Surname": names[surname[i]],
            "CreditScore": int(credit[i]),
            "Geography": str(geography[i]),
            "Gender": "Female" if female[i] else "Male",
            "Age": int(age[i]),
            "Tenure": int(tenure[i]),
            "Balance": float(balance[i]),
            "NumOfProducts": int(products[i]),
            "HasCrCard": int(has_card[i]),
            "IsActiveMember": int(active[i]),
            "EstimatedSalary": float(salary[i]),
            "Exited": int(exited[i]),
        }
        for i in range(rows)
    ]
    return data, truth


MAPPING = """# Mapping for the synthetic bank churn file (bench/bank_churn_synth.py) into `accounts`.
table: accounts
columns:
  CustomerId: id
  Exited: status
values:
  status:
    "1": churned
    "0": active
defaults:
  segment: SMB
  industry: Banking
attributes: rest
"""


def write(path: Path, rows: int = 10_000, seed: int = 0) -> Path:
    """Write the CSV (and its import mapping next to it, `<name>.mapping.yaml`); returns the mapping."""
    data = generate(rows, seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    mapping = path.with_suffix(".mapping.yaml")
    mapping.write_text(MAPPING, encoding="utf-8")
    return mapping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mapping = write(args.out, args.rows, args.seed)
    print(f"wrote {args.rows:,} rows to {args.out} (import mapping: {mapping})")


if __name__ == "__main__":
    main()
