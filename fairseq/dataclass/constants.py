"""ChoiceEnum: fairseq's enum of allowed string values for a dataclass field (a field's flag gets choices=)."""
from enum import Enum
from typing import List


class StrEnum(Enum):
    def __str__(self):
        return self.value

    def __eq__(self, other):
        return str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


def ChoiceEnum(choices: List[str]):
    """An Enum whose members are the given strings (fairseq's way to declare a choice field)."""
    return StrEnum("Choices", {k: k for k in choices})
