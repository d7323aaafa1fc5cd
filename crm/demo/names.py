"""Word lists and the bijective account-number → company-name mapping.

Account number k (1-based) maps through a fixed affine permutation onto a
(brand root, industry word, legal form) triple, so names are unique for up to
`NAME_SPACE` accounts without any bookkeeping, and account 42 is "Acme ...".
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

# Brand roots: "Acme" first (the spec's example id ACME-0042), then syllable pairs.
_PRE = [
    "Zen",
    "Nor",
    "Aur",
    "Vel",
    "Cor",
    "Dyn",
    "Lum",
    "Quan",
    "Ori",
    "Ster",
    "Bri",
    "Cal",
    "Ex",
    "Flux",
    "Gal",
    "Hel",
    "Ion",
    "Jav",
    "Kin",
    "Lex",
    "Mer",
    "Nov",
    "Oct",
    "Pax",
    "Quin",
    "Rav",
    "Sol",
    "Tal",
    "Ul",
    "Ver",
    "Wex",
    "Xan",
    "Yor",
    "Zel",
    "Arc",
    "Bel",
    "Cen",
    "Dal",
    "Em",
    "Fal",
]
_POST = [
    "tra",
    "rix",
    "via",
    "ora",
    "ent",
    "ion",
    "ax",
    "eon",
    "ica",
    "ara",
    "ium",
    "ex",
    "ify",
    "yst",
    "one",
    "ola",
    "ant",
    "ita",
    "ero",
    "ux",
    "ova",
    "ane",
    "ise",
    "ore",
    "ato",
    "eus",
    "ida",
    "ari",
    "elo",
]
ROOTS: tuple[str, ...] = ("Acme", *(p + q for p in _PRE for q in _POST if len(p + q) >= 4))

INDUSTRY_WORDS: dict[str, tuple[str, ...]] = {
    "Software": ("Software", "Cloud", "Data", "Digital", "Apps", "Labs", "Networks"),
    "Healthcare": ("Health", "Medical", "Care", "Bio", "Clinics", "Pharma", "Diagnostics"),
    "Financial Services": ("Capital", "Finance", "Payments", "Insurance", "Bank", "Lending", "Wealth"),
    "Manufacturing": ("Industries", "Robotics", "Machines", "Materials", "Components", "Works", "Metals"),
    "Retail": ("Retail", "Stores", "Brands", "Outfitters", "Market", "Goods", "Commerce"),
    "Logistics": ("Logistics", "Freight", "Shipping", "Transport", "Fleet", "Cargo", "Supply"),
    "Education": ("Learning", "Academy", "Education", "Schools", "Tutoring", "Campus", "Edu"),
    "Media": ("Media", "Studios", "Publishing", "Games", "Broadcasting", "Films", "Music"),
    "Energy": ("Energy", "Power", "Solar", "Utilities", "Grid", "Renewables", "Fuels"),
    "Professional Services": ("Consulting", "Partners", "Advisors", "Legal", "Staffing", "Agency", "Group"),
}
INDUSTRIES: tuple[str, ...] = tuple(INDUSTRY_WORDS)
WORDS: tuple[str, ...] = tuple(w for ws in INDUSTRY_WORDS.values() for w in ws)
WORD_INDUSTRY: tuple[int, ...] = tuple(i for i, ws in enumerate(INDUSTRY_WORDS.values()) for _ in ws)
LEGAL = ("Inc.", "Ltd", "GmbH", "LLC", "SA", "BV", "AG", "Pty Ltd", "Corp.", "plc", "SAS", "AB", "Oy", "KK")

NAME_SPACE = len(ROOTS) * len(WORDS) * len(LEGAL)
_MULT = 999_983  # prime; coprime with NAME_SPACE (checked below)
if math.gcd(_MULT, NAME_SPACE) != 1:  # pragma: no cover - guards an edit of the word lists
    raise RuntimeError("name permutation multiplier must be coprime with the name space")
# Offset chosen so that account 42 gets root 0 ("Acme").
_OFFSET = (-_MULT * 42) % len(ROOTS)

FIRST_NAMES = [
    "Ava",
    "Liam",
    "Noah",
    "Emma",
    "Olivia",
    "Mia",
    "Lucas",
    "Sofia",
    "Ethan",
    "Amara",
    "Yuki",
    "Mateo",
    "Chloe",
    "Ravi",
    "Priya",
    "Jonas",
    "Lena",
    "Omar",
    "Fatima",
    "Diego",
    "Elena",
    "Hugo",
    "Ines",
    "Kenji",
    "Leila",
    "Marco",
    "Nadia",
    "Oscar",
    "Paula",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Ximena",
    "Yara",
    "Zoe",
    "Aaron",
    "Bianca",
    "Carlos",
    "Dana",
    "Eli",
    "Freya",
    "Gabriel",
    "Hana",
    "Ivan",
    "Jade",
    "Kai",
    "Lucia",
    "Malik",
    "Nora",
    "Owen",
    "Pia",
    "Quinn",
    "Rahul",
    "Sara",
    "Theo",
    "Uma",
    "Victor",
]
LAST_NAMES = [
    "Smith",
    "Garcia",
    "Muller",
    "Rossi",
    "Tanaka",
    "Kowalski",
    "Silva",
    "Nguyen",
    "Johansson",
    "Okafor",
    "Patel",
    "Dubois",
    "Schmidt",
    "Kim",
    "Haddad",
    "Novak",
    "Jensen",
    "Moreau",
    "Fischer",
    "Costa",
    "Ivanova",
    "Sato",
    "Chen",
    "Lopez",
    "Martin",
    "Andersen",
    "Becker",
    "Cohen",
    "Da",
    "Silva",
    "Eriksen",
    "Fernandes",
    "Gupta",
    "Hoffmann",
    "Ito",
    "Jovanovic",
    "Khan",
    "Larsen",
    "Meyer",
    "Nakamura",
    "Olsen",
    "Petrov",
    "Quinn",
    "Ramos",
    "Santos",
    "Takahashi",
    "Urban",
    "Vargas",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zimmermann",
    "Abbott",
    "Baker",
    "Carter",
    "Diaz",
    "Evans",
    "Foster",
    "Grant",
    "Hughes",
    "Irwin",
    "Jordan",
    "Keller",
    "Lambert",
    "Mason",
    "Nash",
    "Ortiz",
    "Price",
    "Reyes",
    "Shaw",
    "Turner",
    "Vance",
    "Walsh",
    "Young",
    "Zhou",
    "Brooks",
    "Ellis",
]

CHAMPION_ROLES = ("Head of Operations", "Platform Admin", "Power User")
CONTACT_ROLES = ("Executive Sponsor", "Economic Buyer", "IT Lead", "Finance", "End User", "Team Lead")

ACCOUNT_EXECUTIVES: dict[str, tuple[str, ...]] = {
    "North America": ("Jordan Blake", "Morgan Reyes", "Casey Nguyen", "Riley Carter"),
    "EMEA": ("Sophie Laurent", "Jonas Weber", "Elena Rossi", "Liam O'Connor"),
    "APAC": ("Kenji Sato", "Priya Nair", "Mei Lin", "Lachlan Hughes"),
    "LATAM": ("Mateo Fernandez", "Camila Souza", "Diego Ramos", "Valentina Cruz"),
}
CSMS = (
    "Avery Brooks",
    "Dana Kim",
    "Elliot Shaw",
    "Farah Haddad",
    "Greta Olsen",
    "Hiro Tanaka",
    "Isla Moreau",
    "Jamal Evans",
    "Kira Novak",
    "Leo Santos",
)


def name_parts(numbers: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(root, word, legal) indices for 1-based account numbers; unique below NAME_SPACE."""
    perm = (numbers * _MULT + _OFFSET) % NAME_SPACE
    root = perm % len(ROOTS)
    rest = perm // len(ROOTS)
    return root, rest % len(WORDS), rest // len(WORDS)


def company_name(number: int, root: int, word: int, legal: int) -> str:
    name = f"{ROOTS[root]} {WORDS[word]} {LEGAL[legal]}"
    # Beyond NAME_SPACE accounts the triple repeats; a roman-free suffix keeps names unique.
    cycle = (number - 1) // NAME_SPACE
    return f"{name} ({cycle + 1})" if cycle else name
