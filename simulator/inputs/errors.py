"""User-facing input errors.

Every problem with user input (a scenario, a cohort, a data file, a command-line value) is raised as
:class:`InputError`, which carries the file, the field and the fix. The CLI prints it as one paragraph
and exits with code 2; it never shows a traceback for bad input.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad user input, with enough context to fix it."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None,
                 fix: str | None = None) -> None:
        self.message = message
        self.file = file
        self.field = field
        self.fix = fix
        super().__init__(self.paragraph())

    def paragraph(self) -> str:
        """The error as one paragraph: where (file, field or option), what, and the fix."""
        where = []
        option = bool(self.field) and (self.field.startswith("-") or self.field.isupper())
        file = self.file or ("the command line" if option else None)
        if file:
            where.append(f"in {file}")
        if self.field:
            where.append(f"{'option' if self.field.startswith('-') else 'argument' if option else 'field'} "
                         f"'{self.field}'")
        head = "Error " + ", ".join(where) + ": " if where else "Error: "
        text = head + self.message.rstrip(".") + "."
        if self.fix:
            fix = self.fix.strip()
            fix = fix[4:].strip() if fix.lower().startswith("fix:") else fix
            text += " Fix: " + fix.rstrip(".") + "."
        return text
