"""training stage of ulcerseg."""
