"""Ours against the baseline: sampled comparisons in both orders and their aggregates."""
