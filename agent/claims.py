"""Comparisons the model's sentences get the wrong way round: "66.6%, which is higher than 90.0%".

The figure check (`agent.numbers`) passes such a sentence, since both figures came from a tool;
the side-by-side table and the computed comparison sentences (`agent.compare`) under it are right,
and the narrative above them then contradicts them. A sentence is judged only in the plain case:
one "higher/greater/larger/more/lower/smaller/less/fewer than" with a figure before it and one
after it, of the same kind (both percentages, or both plain amounts); it is wrong when the
figures' order says the opposite of the word. Anything else is left alone.
"""

from __future__ import annotations

import re

from agent.numbers import numbers_in, parse_figure, without_sentences

_COMPARE = re.compile(r"\b(higher|greater|larger|more|lower|smaller|less|fewer)\s+than\b", re.IGNORECASE)
_UP = frozenset({"higher", "greater", "larger", "more"})
_PERCENT = frozenset({"%", "percent"})


def inverted(sentence: str) -> bool:
    """Whether `sentence` says "A is higher than B" (or lower) while its figures say the opposite."""
    found = list(_COMPARE.finditer(sentence))
    if len(found) != 1:
        return False
    m = found[0]
    before, after = numbers_in(sentence[:m.start()]), numbers_in(sentence[m.end():])
    if not before or not after:
        return False
    a, _, unit_a = parse_figure(before[-1])
    b, _, unit_b = parse_figure(after[0])
    if (unit_a in _PERCENT) != (unit_b in _PERCENT) or a == b:
        return False
    return (a < b) if m.group(1).lower() in _UP else (a > b)


def without_inverted(text: str) -> tuple[str, int]:
    """`text` without its inverted comparisons (`inverted`), and how many sentences went."""
    return without_sentences(text, inverted)


def inverted_note(n: int) -> str:
    """The line that says comparisons were left out."""
    return (f"\n\n(Left out: {'a sentence' if n == 1 else f'{n} sentences'} comparing figures the wrong way "
            "round; the comparison below is computed from the results.)")
