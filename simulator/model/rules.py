"""The guideline's rules as data, so every decision the simulator logs can cite its source.

The packaged ``data/rules.yaml`` holds the thirteen rules of the pathway (``P1`` .. ``P13``, distilled in
``PATHWAY.md`` from the seed summaries ``S000`` .. ``S004``) plus a top rule ``X`` for events outside the
guideline's control. Under them sit finer *sub-rules* (``P4.partial_add``, ``X.dropout``, ...) that the
policy and engine cite. Each sub-rule names its parent and the seeds that support it; those must be a
subset of the parent's seeds, and an empty list means "inherit the parent's".

Typical use::

    book = load_rules()
    book.get("P4.partial_add").text      # one plain sentence
    book.parent_of("P4.partial_add")     # "P4"
    book.seeds_of("P4.partial_add")      # ["S000", "S002", "S003", "S004"]

Look-ups are dictionary reads; the engine should still cite ids (plain strings) in its hot loop and
resolve them to text only when building reports.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, PrivateAttr, field_validator, model_validator

from ..inputs.schema import Strict, load_model, require_known

RULES_FILE = Path(__file__).resolve().parents[1] / "data" / "rules.yaml"

SEED_FILES: dict[str, str] = {
    "S000": "000_1cad955620dbbc50.txt",
    "S001": "001_0f6db096cea9e433.txt",
    "S002": "002_f2b09112344e36d4.txt",
    "S003": "003_09b025231b9bbf30.txt",
    "S004": "004_9f2e10036dc9518d.txt",
}

SEED_LABELS: dict[str, str] = {
    "S000": "Clinical Q&A summary (Dr.Oracle, 2025): best treatment for severe neuropathic leg pain",
    "S001": "Clinical Q&A summary (Dr.Oracle, 2025): treatment for neuropathy, duloxetine-first and CIPN",
    "S002": "Clinical Q&A summary (Dr.Oracle, 2025): treatment options for resistant peripheral neuropathy",
    "S003": "MedLink Neurology review 'Neuropathic pain: treatment' (2020; paywalled, key points only)",
    "S004": "Clinical Q&A summary (Dr.Oracle, 2025): are opioids effective for neuropathic pain?",
}

OUTSIDE_GUIDELINE = "X"
"""Top rule for events the guideline does not control (drop-out, end of follow-up); it cites no seed."""

_TOP_ID = re.compile(r"^(P[1-9][0-9]*|X)$")
_SUB_ID = re.compile(r"^(P[1-9][0-9]*|X)\.[a-z][a-z0-9_]*$")


class Rule(Strict):
    """A top rule (``P4``: has a title, no parent) or a sub-rule (``P4.partial_add``: has a parent)."""

    id: str
    text: str = Field(min_length=1)
    seeds: list[str] = Field(default_factory=list)
    title: str | None = None
    parent: str | None = None

    @field_validator("text", "title")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value is not None else None

    @field_validator("seeds")
    @classmethod
    def _known_seeds(cls, value: list[str]) -> list[str]:
        require_known(value, SEED_FILES, "seed id")
        if len(set(value)) != len(value):
            raise ValueError(f"seed ids are repeated in {value}")
        return value

    @property
    def is_top(self) -> bool:
        """True for a top rule (P1..P13, X), False for a sub-rule."""
        return self.parent is None


class RuleBook(Strict):
    """All rules and sub-rules, validated as a whole; look-ups by id."""

    rules: list[Rule] = Field(min_length=1)
    subrules: list[Rule] = Field(default_factory=list)

    _index: dict[str, Rule] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> RuleBook:
        seen: set[str] = set()
        for rule in [*self.rules, *self.subrules]:
            if rule.id in seen:
                raise ValueError(f"rule id '{rule.id}' is used more than once; ids must be unique")
            seen.add(rule.id)

        top: dict[str, Rule] = {}
        for rule in self.rules:
            if not _TOP_ID.match(rule.id):
                raise ValueError(f"top rule id '{rule.id}' must look like 'P<n>' or be 'X'")
            if rule.parent is not None:
                raise ValueError(f"top rule '{rule.id}' must not have a parent; list it under subrules")
            if not rule.title:
                raise ValueError(f"top rule '{rule.id}' needs a title")
            if rule.id != OUTSIDE_GUIDELINE and not rule.seeds:
                raise ValueError(f"guideline rule '{rule.id}' must cite at least one seed (S000-S004)")
            top[rule.id] = rule

        for sub in self.subrules:
            if not _SUB_ID.match(sub.id):
                raise ValueError(f"sub-rule id '{sub.id}' must look like 'P<n>.<name>' (lower-case name)")
            if sub.parent is None:
                raise ValueError(f"sub-rule '{sub.id}' needs a parent")
            if sub.parent not in top:
                raise ValueError(f"sub-rule '{sub.id}' names parent '{sub.parent}', which is not a top rule")
            if sub.id.split(".", 1)[0] != sub.parent:
                raise ValueError(f"sub-rule '{sub.id}' must start with its parent's id '{sub.parent}.'")
            extra = [s for s in sub.seeds if s not in top[sub.parent].seeds]
            if extra:
                raise ValueError(f"sub-rule '{sub.id}' cites seed(s) {extra} that its parent "
                                 f"'{sub.parent}' does not cite ({top[sub.parent].seeds})")
        return self

    def model_post_init(self, __context: object) -> None:
        self._index = {r.id: r for r in [*self.rules, *self.subrules]}

    def get(self, rule_id: str) -> Rule:
        """The rule or sub-rule with this id; KeyError naming the id (and close matches) if unknown."""
        try:
            return self._index[rule_id]
        except KeyError:
            close = difflib.get_close_matches(str(rule_id), self._index, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"unknown rule id '{rule_id}' (not in the rulebook){hint}") from None

    def is_resolvable(self, rule_id: str) -> bool:
        """True if the id names a rule or sub-rule of this book."""
        return rule_id in self._index

    def ids(self) -> list[str]:
        """Every id, top rules first, each group in file order."""
        return list(self._index)

    def top_ids(self) -> list[str]:
        """The top rules' ids (P1..P13 and X), in file order."""
        return [r.id for r in self.rules]

    def children_of(self, rule_id: str) -> list[str]:
        """The sub-rule ids under a top rule, in file order."""
        self.get(rule_id)
        return [r.id for r in self.subrules if r.parent == rule_id]

    def parent_of(self, rule_id: str) -> str:
        """The top rule a sub-rule belongs to; a top rule is its own parent."""
        rule = self.get(rule_id)
        return rule.parent if rule.parent is not None else rule.id

    def seeds_of(self, rule_id: str) -> list[str]:
        """The seeds supporting this rule: a sub-rule's own, or its parent's if it lists none."""
        rule = self.get(rule_id)
        if rule.seeds or rule.parent is None:
            return list(rule.seeds)
        return list(self._index[rule.parent].seeds)

    def text_of(self, rule_id: str) -> str:
        """The plain-language text of a rule or sub-rule."""
        return self.get(rule_id).text

    def title_of(self, rule_id: str) -> str:
        """The title of the rule's top rule (for a sub-rule, its parent's title)."""
        title = self._index[self.parent_of(rule_id)].title
        return title or ""


def load_rulebook(path: str | Path) -> RuleBook:
    """Load and validate a rulebook YAML file; raises InputError naming the file, field and fix."""
    return load_model(path, RuleBook)


@lru_cache(maxsize=1)
def load_rules() -> RuleBook:
    """The packaged rulebook (``simulator/data/rules.yaml``), loaded and validated once per process."""
    return load_rulebook(RULES_FILE)
