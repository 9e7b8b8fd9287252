"""calibration stage of ulcerseg."""
