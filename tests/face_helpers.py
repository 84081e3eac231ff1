"""Shared by the face tests: the installed face data, or a skip (a failure in CI)."""

from __future__ import annotations

import os

import pytest

from simviz_widgets.datasets.faces import (
    FACE_API_FOLDER,
    FACE_RECOGNITION_FOLDER,
    FaceDataMissingError,
    face_data_dir,
    face_file,
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_face_data() -> None:
    """Skip when the face photos / weights are not installed; in CI (CI=true) fail instead."""
    try:
        face_file(FACE_API_FOLDER, "face_recognition_model.bin")
        face_file(FACE_RECOGNITION_FOLDER, "obama.jpg")
    except FaceDataMissingError as err:
        message = f"face data missing in {face_data_dir()}: {err}"
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message + "; CI=true turns this into a failure")
