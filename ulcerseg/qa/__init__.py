"""qa stage of ulcerseg."""
