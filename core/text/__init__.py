"""Text in and out of models: prompt templates, cleaning replies, parsing pairs and scores."""
