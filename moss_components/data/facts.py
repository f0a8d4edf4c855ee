"""The small world of facts the built-in corpus speaks about, loaded from the package data file ``facts.json``.

Categories: single-digit addition, what comes after / before a number, country -> capital, opposites, and colours of
common things. Each :class:`Fact` has several question phrasings and statement phrasings, one bare ``answer`` for
scoring and one spoken ``answer_text`` with a short carrier phrase ("the answer is paris"), because isolated single
words are hard for a small ASR judge to transcribe.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from importlib import resources

from moss_components.data.text_norm import number_to_words

ANSWER_CARRIER = "the answer is {answer}"
CATEGORIES = ("addition", "after", "before", "capital", "opposite", "colour")


@dataclass(frozen=True)
class Fact:
    """One fact. All text is lowercase words without punctuation (manifest transcript form).

    Args:
        id: stable id, e.g. ``"capital-france"``, ``"addition-3-4"``.
        category: one of :data:`CATEGORIES`.
        questions: phrasings of the question (the first is the canonical one).
        statements: phrasings of the fact as a sentence.
        answer: the bare expected answer ("paris", "seven") for scoring.
    """

    id: str
    category: str
    questions: tuple[str, ...]
    statements: tuple[str, ...]
    answer: str

    @property
    def answer_text(self) -> str:
        """The spoken answer with its carrier phrase: ``"the answer is paris"``."""
        return ANSWER_CARRIER.format(answer=self.answer)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["questions"], d["statements"] = list(self.questions), list(self.statements)
        d["answer_text"] = self.answer_text
        return d


def _load_json() -> dict:
    return json.loads(resources.files("moss_components.data").joinpath("facts.json").read_text())


def load_facts() -> list[Fact]:
    """All facts of the package data file, in a fixed order (arithmetic first, then the data-file lists)."""
    data = _load_json()
    facts: list[Fact] = []
    w = number_to_words
    add_max = int(data["arithmetic"]["add_max"])
    for a in range(add_max + 1):
        for b in range(add_max + 1):
            qa, qb, s = w(a), w(b), w(a + b)
            facts.append(
                Fact(
                    f"addition-{a}-{b}",
                    "addition",
                    (
                        f"what is {qa} plus {qb}",
                        f"how much is {qa} plus {qb}",
                        f"what do you get if you add {qa} and {qb}",
                    ),
                    (f"{qa} plus {qb} is {s}", f"{qa} plus {qb} equals {s}"),
                    s,
                )
            )
    top = int(data["arithmetic"]["successor_max"])
    for n in range(top + 1):
        facts.append(
            Fact(
                f"after-{n}",
                "after",
                (f"what number comes after {w(n)}", f"what comes after {w(n)}", f"which number follows {w(n)}"),
                (f"{w(n + 1)} comes after {w(n)}", f"after {w(n)} comes {w(n + 1)}"),
                w(n + 1),
            )
        )
    for n in range(1, top + 2):
        facts.append(
            Fact(
                f"before-{n}",
                "before",
                (
                    f"what number comes before {w(n)}",
                    f"what comes before {w(n)}",
                    f"which number is just before {w(n)}",
                ),
                (f"{w(n - 1)} comes before {w(n)}", f"before {w(n)} comes {w(n - 1)}"),
                w(n - 1),
            )
        )
    for item in data["capitals"]:
        c, k = item["country"], item["capital"]
        facts.append(
            Fact(
                f"capital-{c.replace(' ', '-')}",
                "capital",
                (f"what is the capital of {c}", f"which city is the capital of {c}", f"tell me the capital of {c}"),
                (f"the capital of {c} is {k}", f"{k} is the capital of {c}"),
                k,
            )
        )
    for item in data["opposites"]:
        a, b = item["word"], item["opposite"]
        facts.append(
            Fact(
                f"opposite-{a.replace(' ', '-')}",
                "opposite",
                (
                    f"what is the opposite of {a}",
                    f"tell me the opposite of {a}",
                    f"which word means the opposite of {a}",
                ),
                (f"the opposite of {a} is {b}", f"{b} is the opposite of {a}"),
                b,
            )
        )
    for item in data["colours"]:
        t, c = item["thing"], item["colour"]
        facts.append(
            Fact(
                f"colour-{t.replace(' ', '-')}",
                "colour",
                (f"what colour is {t}", f"what is the colour of {t}", f"tell me the colour of {t}"),
                (f"{t} is {c}", f"the colour of {t} is {c}"),
                c,
            )
        )
    ids = [f.id for f in facts]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"facts.json gives duplicate fact ids {dup}; each question subject must be unique")
    return facts


def mention_sentences() -> list[str]:
    """Neutral sentences that speak every country and capital name without pairing them (read speech only).

    They let the speech side hear the words of held-out facts without hearing the facts.
    """
    data = _load_json()
    out = []
    for item in data["capitals"]:
        out.append(f"i would like to visit {item['country']} one day")
        out.append(f"{item['capital']} is a big city")
    return out


def select_heldout(facts: list[Fact], fraction: float, seed: int) -> set[str]:
    """Pick ``fraction`` of the facts of each category (at least one per category) as held out, deterministically."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"heldout fraction {fraction} must be in [0, 1)")
    rng = random.Random(f"heldout-{seed}")
    out: set[str] = set()
    for cat in CATEGORIES:
        ids = sorted(f.id for f in facts if f.category == cat)
        if not ids or fraction == 0.0:
            continue
        k = max(1, round(fraction * len(ids)))
        out.update(rng.sample(ids, k))
    return out


def chance_level(facts: list[Fact], category: str) -> float:
    """Accuracy of guessing uniformly among the distinct answers of a category."""
    answers = {f.answer for f in facts if f.category == category}
    if not answers:
        raise ValueError(f"no facts in category {category!r}; expected one of {CATEGORIES}")
    return 1.0 / len(answers)
