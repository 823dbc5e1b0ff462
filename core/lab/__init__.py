"""The prompt lab: trials of edited prompts and versions side by side."""
