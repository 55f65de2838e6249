"""Which countries a deployment backfills: one ISO code, a list of them, or ALL.

`ISO_CODE` is read through `Countries.parse` by every entry point (Dagster, the CLI, the
Lambda, the fan-out), so `usa, CAN,USA` and `CAN,USA` are the same set everywhere: codes
upper-cased, duplicates dropped, order ignored. The set has one canonical label (`CAN,USA`,
`ALL`), which each file records and which messages show, and one slug (`can_usa`, `all`) for
the names derived from it (the default prefix and table).
"""

import re
from dataclasses import dataclass

ALL = "ALL"
ISO_PATTERN = r"^[A-Z]{3}$"  # an ISO 3166-1 alpha-3 code: what ISO_CODE and rows may hold
_ISO = re.compile(ISO_PATTERN)
_USAGE = "ALL, or ISO 3166-1 alpha-3 codes separated by commas (e.g. USA, or USA,CAN,MEX)"


@dataclass(frozen=True)
class Countries:
    """A set of countries; no codes means every country the API knows (ALL)."""

    codes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Countries":
        """The set that `text` names.

        Raises:
            ValueError: naming every entry that is not a code, and the accepted forms.
        """
        entries = [entry.strip().upper() for entry in text.split(",")]
        if entries == [ALL]:
            return cls()
        problems = [
            "ALL cannot be mixed with codes" if entry == ALL else f"{entry!r} is not three letters"
            for entry in entries
            if entry == ALL or not _ISO.match(entry)
        ]
        if problems:
            raise ValueError(f"ISO_CODE {text!r} must be {_USAGE}: {'; '.join(problems)}")
        return cls(tuple(sorted(set(entries))))

    @property
    def is_all(self) -> bool:
        """Every country, fetched with the API's unfiltered query."""
        return not self.codes

    @property
    def label(self) -> str:
        """`ALL`, or the codes in order, e.g. `CAN,USA`: what files record, messages show."""
        return ALL if self.is_all else ",".join(self.codes)

    @property
    def slug(self) -> str:
        """`all`, or the codes lowercased and joined, e.g. `can_usa`: for derived names."""
        return "all" if self.is_all else "_".join(code.lower() for code in self.codes)

    @property
    def queries(self) -> tuple[str | None, ...]:
        """The `iso` of each request a day takes: one per country, or one unfiltered (None)."""
        return (None,) if self.is_all else self.codes

    def __str__(self) -> str:
        return self.label


def is_iso_code(text: str) -> bool:
    """Exactly three letters A-Z, so nothing else can ride along into a query or a path."""
    return bool(_ISO.match(text))
