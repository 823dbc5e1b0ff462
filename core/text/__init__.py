"""Text in and out of models: prompt templates and their stored versions, cleaning replies,
parsing pairs and scores, synonyms for grounding."""
