"""A small Okapi BM25 index over chunk texts (lexical half of hybrid retrieval).

Small enough to rebuild in memory from the collection whenever it changes: the
knowledge base is thousands of chunks, not millions.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_TOKEN = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
_STOPWORD_TEXT = """a an and are as at be been but by can could did do does for from had has have how i if in
into is it its itself me my no not of on or our should so than that the their them then there these they
this those to too was we were what when where which while who whom why will with would you your about also
each other such more most very just only own same any all both"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _stem(token: str) -> str:
    """Crude English suffix folding, enough to match "activities"/"activity", "costs"/"cost"."""
    if len(token) <= 3 or token.isdigit():
        return token
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", "e")):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            token = token[: -len(suffix)] + repl
            break
    else:
        if token.endswith("s") and not token.endswith(("ss", "us", "is")):
            token = token[:-1]
    # "price"/"pricing"/"prices" and "manage"/"managed" meet at "pric", "manag".
    if token.endswith("e") and len(token) >= 4:
        token = token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens, stop words dropped, suffixes folded."""
    out = []
    for raw in _TOKEN.findall(text.lower()):
        token = raw.replace("’", "'").split("'")[0]
        if token and token not in STOPWORDS:
            out.append(_stem(token))
    return out


class BM25Index:
    """Okapi BM25 (k1=1.2, b=0.75) with the non-negative Lucene idf."""

    def __init__(self, texts: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._docs = [Counter(tokenize(t)) for t in texts]
        self._lengths = [sum(d.values()) for d in self._docs]
        n = len(self._docs)
        self._avg_len = (sum(self._lengths) / n) if n else 0.0
        df: Counter[str] = Counter()
        for d in self._docs:
            df.update(d.keys())
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self._postings: dict[str, list[int]] = {}
        for i, d in enumerate(self._docs):
            for t in d:
                self._postings.setdefault(t, []).append(i)

    def __len__(self) -> int:
        return len(self._docs)

    def scores(self, query: str) -> dict[int, float]:
        """BM25 score of every document sharing a term with `query` (by position)."""
        out: dict[int, float] = {}
        for term in set(tokenize(query)):
            idf = self._idf.get(term)
            if idf is None:
                continue
            for i in self._postings[term]:
                tf = self._docs[i][term]
                norm = 1 - self.b + self.b * self._lengths[i] / (self._avg_len or 1.0)
                out[i] = out.get(i, 0.0) + idf * tf * (self.k1 + 1) / (tf + self.k1 * norm)
        return out

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The `k` best (position, score) pairs, best first."""
        ranked = sorted(self.scores(query).items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:k]
