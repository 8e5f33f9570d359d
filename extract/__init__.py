"""t3al package."""
