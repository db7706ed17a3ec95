"""One folder per network architecture: its modules, its config dataclass (the only home of its keywords)."""
