"""The report's section kinds, grouped by the part of the practical they answer (part1.py to part4.py, then
extras.py): each kind is one function registered with ``@builder`` (common.py), found here by name."""

from model.practical.sections import extras, part1, part2, part3, part4  # noqa: F401 (each registers its kinds)
from model.practical.sections.common import BUILDERS, READS_RUNS

__all__ = ["BUILDERS", "READS_RUNS"]
