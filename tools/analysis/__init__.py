"""Guided value-chain analysis: the five steps as one typed result (`value_chain_analysis`)."""

from tools.analysis.core import value_chain_analysis
from tools.analysis.models import ValueChainAnalysis

__all__ = ["ValueChainAnalysis", "value_chain_analysis"]
