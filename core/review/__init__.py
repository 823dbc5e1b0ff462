"""Human review: sample lists with filters, decisions, edits and re-judging."""
