"""Talking to models: one backend per wire, the adaptive endpoint pool, calls and their cost."""
