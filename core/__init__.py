"""The engine: everything but the app; nothing below it imports Textual."""
