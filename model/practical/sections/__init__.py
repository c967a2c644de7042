"""The report's section kinds, by the part of the practical they answer (part1.py, variants.py, internet.py, part2.py
to part4.py): each kind is one function registered with ``@builder`` (common.py), found here by name."""

from model.practical.sections import internet, part1, part2, part3, part4, variants  # noqa: F401 (each registers its kinds)
from model.practical.sections.common import BUILDERS, READS_RUNS

__all__ = ["BUILDERS", "READS_RUNS"]
