"""Which regions a deployment backfills: one of the API's codes, a list of them, or ALL.

The API names most regions by ISO 3166-1 alpha-3 code (USA, CAN), but not all: ships,
groupings and shared territories have codes of its own (`NA-SHIP-DP` for the Diamond Princess,
`GGY-JEY` for the Channel Islands, `Others`, `cruise`; `GET /regions` lists them all, see
docs/covid_api_contract.md). So a code is any short run of letters and digits, with single
hyphens between them: nothing else can ride along into a query string, a path or a table name.

`ISO_CODE` is read through `Countries.parse` by every entry point (Dagster, the CLI, the
Lambda, the fan-out), so `usa, CAN,USA` and `CAN,USA` are the same set everywhere: codes
compared without case (upper-cased), duplicates dropped, order ignored. The set has one
canonical label (`CAN,USA`, `ALL`), which each file records and which messages show, and one
slug (`can_usa`, `all`) for the names derived from it (the default prefix and table), made of
lowercase letters, digits and underscores only.
"""

import re
from dataclasses import dataclass

ALL = "ALL"
MAX_CODE_LENGTH = 24  # the API's longest, NA-SHIP-MSZ, is 11
CODE_PATTERN = r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$"  # what ISO_CODE's entries may be
_CODE = re.compile(CODE_PATTERN)
_USAGE = (
    "ALL, or the API's region codes separated by commas (e.g. USA, or USA,CAN,MEX; codes such "
    f"as NA-SHIP-DP too: letters, digits and single hyphens, at most {MAX_CODE_LENGTH} "
    "characters; GET /regions lists them)"
)


@dataclass(frozen=True)
class Countries:
    """A set of regions; no codes means every region the API knows (ALL)."""

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
            "ALL cannot be mixed with codes" if entry == ALL else f"{entry!r} is not a code"
            for entry in entries
            if entry == ALL or not is_region_code(entry)
        ]
        if problems:
            raise ValueError(f"ISO_CODE {text!r} must be {_USAGE}: {'; '.join(problems)}")
        return cls(tuple(sorted(set(entries))))

    @property
    def is_all(self) -> bool:
        """Every region, fetched with the API's unfiltered query."""
        return not self.codes

    @property
    def label(self) -> str:
        """`ALL`, or the codes in order, e.g. `CAN,USA`: what files record, messages show."""
        return ALL if self.is_all else ",".join(self.codes)

    @property
    def slug(self) -> str:
        """`all`, or the codes lowercased and joined, e.g. `can_usa`: for derived names.

        A code's hyphen becomes `__`, so that `GGY-JEY` (`ggy__jey`) and `GGY,JEY`
        (`ggy_jey`) keep prefixes and tables of their own.
        """
        if self.is_all:
            return "all"
        return "_".join(code.lower().replace("-", "__") for code in self.codes)

    @property
    def queries(self) -> tuple[str | None, ...]:
        """The `iso` of each request a day takes: one per region, or one unfiltered (None)."""
        return (None,) if self.is_all else self.codes

    def __str__(self) -> str:
        return self.label


def is_region_code(text: str) -> bool:
    """Letters, digits and single hyphens, at most MAX_CODE_LENGTH: safe in a query or a path."""
    return len(text) <= MAX_CODE_LENGTH and bool(_CODE.match(text))
