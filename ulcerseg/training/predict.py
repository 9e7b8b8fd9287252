"""Whole-image prediction with a tile predictor at a dataset's scale (validation, evaluate, scripts).

Overlap metrics are in :mod:`ulcerseg.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: uint8 N×H×W×3 RGB tiles (H, W multiples of 32) -> float32 N×H×W probabilities.
TilePredictor = Callable[[np.ndarray], np.ndarray]


def predict_image(
    predict: TilePredictor, image: np.ndarray, scale: float = 1.0, window: int = 1024
) -> np.ndarray:
    """Probability map (float32, same H×W as ``image``) of a whole RGB uint8 image.

    The image is resized by ``scale`` (to the model's px per mm) first, then tiled by
    :func:`ulcerseg.segmentation.inference.predict_image` (the same code as measuring).
    """
    import cv2

    from ulcerseg.segmentation.inference import predict_image as predict_tiled

    h0, w0 = image.shape[:2]
    if scale != 1.0:
        size = (max(32, round(w0 * scale)), max(32, round(h0 * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    prob = predict_tiled(predict, image, window)
    if prob.shape != (h0, w0):
        prob = cv2.resize(prob, (w0, h0), interpolation=cv2.INTER_LINEAR)
    return prob.astype(np.float32, copy=False)
