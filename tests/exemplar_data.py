"""A crude 'style' made from the test portraits, plus files that must be rejected."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image, ImageOps

FACES = Path(__file__).parent / "data" / "faces"


def exemplar_zip_bytes() -> bytes:
    """12 posterized, mirrored and solarized copies of four portraits, a dog photo and a text file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in ("obama.jpg", "biden.jpg", "alex-lacamoire.png", "two_people.jpg"):
            photo = Image.open(FACES / name).convert("RGB")
            variants = {
                "poster": ImageOps.posterize(photo, 2),
                "mirror": ImageOps.mirror(photo),
                "solar": ImageOps.solarize(photo, 160),
            }
            for variant, image in variants.items():
                out = io.BytesIO()
                image.save(out, format="PNG")
                z.writestr(f"{variant}-{name}.png", out.getvalue())
        z.writestr("dog.jpg", (FACES / "dogs.jpg").read_bytes())
        z.writestr("readme.txt", b"not an image")
    return buf.getvalue()


def labelled_photo_zips() -> tuple[bytes, bytes]:
    """Two photo sets for a direction fit: 6 variants of two portraits each (positive: Obama and Biden;
    negative: alex-lacamoire and the larger face of two_people)."""

    def archive(names: tuple[str, ...]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name in names:
                photo = Image.open(FACES / name).convert("RGB")
                variants = {"plain": photo, "mirror": ImageOps.mirror(photo), "grey": ImageOps.grayscale(photo)}
                for variant, image in variants.items():
                    out = io.BytesIO()
                    image.convert("RGB").save(out, format="PNG")
                    z.writestr(f"{variant}-{name}.png", out.getvalue())
        return buf.getvalue()

    return archive(("obama.jpg", "biden.jpg")), archive(("alex-lacamoire.png", "two_people.jpg"))
