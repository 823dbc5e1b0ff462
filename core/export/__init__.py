"""LLaVA JSON, JSON Lines and Hugging Face exports, and the mix665k validator."""
