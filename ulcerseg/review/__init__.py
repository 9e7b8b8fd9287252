"""review stage of ulcerseg."""
