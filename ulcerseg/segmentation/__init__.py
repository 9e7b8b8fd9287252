"""segmentation stage of ulcerseg."""
