"""Text made safe to store and show: secrets redacted, control characters and image tokens
removed. It imports nothing from the project, so every layer may use it."""
