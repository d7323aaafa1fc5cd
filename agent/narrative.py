"""The length budget of the answer's narrative: the streamed text stops at the first sentence end
after `NARRATIVE_CHARS`.

The prompts ask for one to three short sentences (data) or a few short sentences or a short list
(framework); the 1.5B model sometimes pastes whole passages after them instead, at about 0.1 s a
token (a framework answer took 53 s that way in the citations bench). Everything the user asked
for in data is rendered by code under the narrative, so a narrative past the budget only repeats.
The stream is closed there, which also stops the server generating (llama.cpp cancels a streamed
request whose client has gone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NARRATIVE_CHARS = 500
"""About 120 tokens: three long sentences, or a list of five short items, fit under it."""
_END = re.compile(r"[.!?](?=\s)|\n")


@dataclass
class Budget:
    """Feed the streamed pieces in order; each call returns what to keep of that piece."""

    limit: int = NARRATIVE_CHARS
    text: str = ""
    full: bool = False
    """The budget was reached: keep nothing more, close the stream."""

    def take(self, piece: str) -> str:
        if self.full:
            return ""
        start = len(self.text)
        self.text += piece
        if len(self.text) <= self.limit:
            return piece
        # the first sentence end at or past the limit: a "." is known to end a sentence only when
        # the next piece brings the space after it, so the cut may fall in the piece before
        m = _END.search(self.text, self.limit - 1)
        if m is None:
            return piece
        cut = m.end()
        self.text, self.full = self.text[:cut], True
        return self.text[start:]
