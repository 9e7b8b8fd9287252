"""synth stage of ulcerseg."""
