"""Finding the face of an upload in the API process: decode, detect, check size (no torch).

Both stylize uploads and style exemplars go through `face_landmarks`; the worker later renders the
FFHQ crop from the landmarks it returns.
"""

from __future__ import annotations

from models.alignment import FaceAligner
from models.errors import FaceIndexOutOfRange, FaceTooSmall, NoFaceFound
from models.images import load_image


def face_landmarks(
    aligner: FaceAligner, data: bytes, max_pixels: int, min_face_size: int, face_index: int = 0
) -> list[list[float]]:
    """The 68 landmarks of the `face_index`-th largest face; raises the typed InputErrors."""
    photo = load_image(data, max_pixels).image
    faces = aligner.detect(photo, exhaustive=face_index > 0)
    if not faces:
        raise NoFaceFound("no human face was found in the image")
    if face_index >= len(faces):
        raise FaceIndexOutOfRange(f"face_index {face_index} asked, but {len(faces)} face(s) were found")
    face = faces[face_index]
    if face.size < min_face_size:
        raise FaceTooSmall(f"the face is {face.size:.0f} px across; at least {min_face_size} px is needed")
    return face.landmarks.tolist()
