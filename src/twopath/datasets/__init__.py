"""Data room: the sentiment corpus, the loan generators and the two seed examples."""

from twopath.datasets import loan, sentiment

__all__ = ["loan", "sentiment"]
