"""OpenCV ArUco dictionaries by name and the cell pattern of one marker.

Used by the detector (:mod:`ulcerseg.calibration.marker`), the printable sheet
(:mod:`ulcerseg.calibration.sheet`), the synthetic sticker and config validation, so a
dictionary name means the same thing everywhere and is rejected with the same message.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from ulcerseg.errors import ConfigError


@lru_cache(maxsize=16)
def _predefined(code: int) -> cv2.aruco.Dictionary:
    return cv2.aruco.getPredefinedDictionary(code)


def aruco_dictionary(name: str, source: str = "<config>") -> cv2.aruco.Dictionary:
    """OpenCV predefined ArUco/AprilTag dictionary by name, e.g. ``DICT_4X4_50``.

    ``source`` names the file or option in the one-line ConfigError for an unknown name.
    """
    code = getattr(cv2.aruco, str(name), None)
    if not str(name).startswith("DICT_") or not isinstance(code, int):
        raise ConfigError(f"{source}: marker.dictionary {name!r} is not an OpenCV ArUco dictionary")
    return _predefined(code)


def marker_cells(dictionary: str, marker_id: int, source: str = "<config>") -> np.ndarray:
    """Cells of a marker including its 1-cell black border: (n+2) x (n+2) bool, True = black."""
    d = aruco_dictionary(dictionary, source)
    n_ids = d.bytesList.shape[0]
    if not 0 <= marker_id < n_ids:
        raise ConfigError(f"{source}: marker ID {marker_id} is not in {dictionary} (IDs 0-{n_ids - 1})")
    n = d.markerSize + 2
    return cv2.aruco.generateImageMarker(d, marker_id, n, borderBits=1) < 128
