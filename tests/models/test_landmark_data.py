"""The landmarks that bench/gpu_serving.py feeds its jobs with (tests/data/portrait_landmarks.json: a GPU
host has no landmark model) are what the API's aligner finds in those photos today."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from service.portrait.configs import AlignerConfig
from service.portrait.media.alignment import FaceAligner
from service.portrait.media.images import load_image

DATA = Path(__file__).parents[1] / "data"


def test_the_stored_landmarks_are_the_aligners() -> None:
    stored = json.loads((DATA / "portrait_landmarks.json").read_text())
    aligner = FaceAligner(AlignerConfig())
    assert sorted(stored) == ["alex-lacamoire.png", "biden.jpg", "obama.jpg"]
    for name, landmarks in stored.items():
        found = aligner.detect(load_image(DATA / "faces" / name).image)[0].landmarks
        assert np.abs(np.asarray(landmarks) - found).max() < 1e-3, name
