"""Ours against the baseline: sampled comparisons in both orders, the one verdict recorder the
lab shares, and aggregates with intervals."""
