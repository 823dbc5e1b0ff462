"""Dataset statistics, grounding and diversity, and the report with its plots."""
