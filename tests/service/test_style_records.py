"""Style records in Redis (service/platform/style_records.py): with a remote store, every host's Registry reads
one record per style, whatever its own folder holds."""

from __future__ import annotations

import json
from pathlib import Path

from redis import Redis

from service.platform.registry import Registry
from service.platform.style_records import StyleRecords


def test_hosts_share_a_styles_record_and_ignore_their_leftovers(redis: Redis, tmp_path: Path) -> None:
    api, trainer = Registry(tmp_path / "api", StyleRecords(redis)), Registry(tmp_path / "train", StyleRecords(redis))
    # 1. Written on the API host, which has no folder for it (none is made), seen on the training host.
    api.write_style_meta("poster", {"name": "Poster", "status": "pending", "job_id": "j1"})
    assert not api.style_dir("poster").exists()
    assert trainer.style("poster").status == "pending" and trainer.read_style_meta("poster")["job_id"] == "j1"
    # 2. The training host changes it; the API host sees the change, and its other fields are kept.
    trainer.style_dir("poster").mkdir(parents=True)
    trainer.update_style_meta("poster", status="training")
    assert api.style("poster").status == "training" and api.style("poster").name == "Poster"
    on_disk = json.loads((trainer.style_dir("poster") / "style.json").read_text())
    assert on_disk["status"] == "training"  # the training host's folder has it too (its bundle, once ready)
    # 3. A folder left by a crashed host, in training and without a record: not a style. A ready bundle
    #    without a record (installed, or pulled): a style.
    Registry.write_style_meta_in(trainer.style_dir("stale"), "stale", {"name": "x", "status": "training"})
    Registry.write_style_meta_in(trainer.style_dir("installed"), "installed", {"name": "y", "status": "ready"})
    assert [s.id for s in trainer.styles()] == ["installed", "poster"]
    assert [s.id for s in api.styles()] == ["poster"]
    # 4. The record wins over a host's file; removing the style removes the record.
    api.update_style_meta("poster", status="canceled")
    assert trainer.style("poster").status == "canceled"
    api.remove_style("poster")
    assert trainer.style("poster") is None and StyleRecords(redis).all() == {}
    # 5. Without records (one machine), the folder is the record, as before.
    assert Registry(tmp_path / "train").style("stale").status == "training"
