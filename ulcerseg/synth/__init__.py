"""Calibrated synthetic finger photographs and rectified training tiles with exact ground truth.

Frames follow :mod:`ulcerseg.records`: ulcer outlines are in marker-plane mm (origin at the
marker's top-left outer corner), masks and marker corners in photo px.
"""

from ulcerseg.synth.dataset import Tile, generate_training_set, render_tile
from ulcerseg.synth.render import PhotoConfig, PhotoTruth, SynthPhoto, render_photo
from ulcerseg.synth.trial import encode_jpeg, generate_photos, generate_trial, resize_photo

__all__ = [
    "PhotoConfig",
    "PhotoTruth",
    "SynthPhoto",
    "Tile",
    "encode_jpeg",
    "generate_photos",
    "generate_training_set",
    "generate_trial",
    "render_photo",
    "render_tile",
    "resize_photo",
]
