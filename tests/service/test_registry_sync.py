"""The registry across machines (service/platform/registry_sync.py, issue 27), against a real SeaweedFS: a style
published on one host is pulled on another, byte for byte; a re-publish replaces it and its old files
leave the store; a bundle without its manifest (an upload cut off) is never seen; a file that does not
match its manifest is refused and the host keeps what it had; a style retired on one host goes from the
others, while a style only one host has (never published) stays."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from service.platform import registry_sync
from service.platform.registry import Registry
from tests.s3_server import s3_store


def _hosts(tiny_data_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a" / "registry", tmp_path / "b" / "registry"
    shutil.copytree(tiny_data_dir / "registry", a)
    b.mkdir(parents=True)
    return a, b


def _same(one: Path, other: Path) -> bool:
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file()) and all(
        (one / f).read_bytes() == (other / f).read_bytes() for f in files
    )


def test_a_style_published_on_one_host_is_pulled_on_another(s3_server, tiny_data_dir: Path, tmp_path: Path) -> None:
    store = s3_store(s3_server.endpoint, uuid.uuid4().hex)
    a, b = _hosts(tiny_data_dir, tmp_path)
    first = registry_sync.publish(store, a, "styles/demo")
    report = registry_sync.pull(store, b)
    assert report.fetched == ["styles/demo"] and _same(a / "styles" / "demo", b / "styles" / "demo")
    assert Registry(b).style("demo") is not None and registry_sync.local_version(b, "styles/demo") == first
    assert registry_sync.pull(store, b).fetched == []  # up to date: nothing fetched again
    # a re-publish (new weights on host a) replaces it; the old version's files leave the store
    (a / "styles" / "demo" / "style.json").write_text(json.dumps({"name": "demo v2", "status": "ready"}))
    second = registry_sync.publish(store, a, "styles/demo")
    assert registry_sync.pull(store, b).fetched == ["styles/demo"]
    assert Registry(b).style("demo").name == "demo v2"
    keys = [i.key for i in store.list("registry/styles/demo/")]
    assert keys and all(f"/{second}/" in k for k in keys) and not any(f"/{first}/" in k for k in keys)


def test_half_published_and_corrupt_bundles_are_never_installed(s3_server, tiny_data_dir: Path, tmp_path: Path) -> None:
    store = s3_store(s3_server.endpoint, uuid.uuid4().hex)
    a, b = _hosts(tiny_data_dir, tmp_path)
    # files without a manifest: a publish cut off midway
    store.put("registry/styles/cut/v1/style.json", b'{"name": "cut", "status": "ready"}')
    assert registry_sync.pull(store, b).fetched == [] and not (b / "styles" / "cut").exists()
    # a good version, then a corrupt one
    registry_sync.publish(store, a, "styles/demo")
    registry_sync.pull(store, b)
    before = (b / "styles" / "demo" / "style.json").read_bytes()
    (a / "styles" / "demo" / "style.json").write_text(json.dumps({"name": "demo v2", "status": "ready"}))
    version = registry_sync.publish(store, a, "styles/demo")
    store.put(f"registry/styles/demo/{version}/style.json", b'{"name": "tampered", "status": "ready"}')
    report = registry_sync.pull(store, b)
    assert report.refused == ["styles/demo"] and report.fetched == []
    assert (b / "styles" / "demo" / "style.json").read_bytes() == before  # the host keeps what it had
    assert not list((b / "styles").glob(".incoming-*"))  # no scratch left behind


def test_a_retired_style_goes_from_every_host(s3_server, tiny_data_dir: Path, tmp_path: Path) -> None:
    store = s3_store(s3_server.endpoint, uuid.uuid4().hex)
    a, b = _hosts(tiny_data_dir, tmp_path)
    registry_sync.publish(store, a, "styles/demo")
    registry_sync.pull(store, b)
    shutil.copytree(a / "styles" / "demo", b / "styles" / "mine")  # b's own, never published
    registry_sync.retire(store, "styles/demo")
    report = registry_sync.pull(store, b)
    assert report.removed == ["styles/demo"] and not (b / "styles" / "demo").exists()
    assert (b / "styles" / "mine").is_dir() and list(store.list("registry/styles/demo")) == []


class CountingStore:
    """The real store, with the keys of every GET kept (what a pull costs)."""

    def __init__(self, store) -> None:
        self.store, self.gets = store, []

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        return self.store.get(key)

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def test_a_pass_that_finds_nothing_new_reads_no_manifest(s3_server, tiny_data_dir: Path, tmp_path: Path) -> None:
    """Hosts pull every few seconds: with nothing changed a pass is the listing alone (the manifests'
    ETags match what the host read); a re-publish is read again, and only it."""
    store = s3_store(s3_server.endpoint, uuid.uuid4().hex)
    a, b = _hosts(tiny_data_dir, tmp_path)
    shutil.copytree(a / "styles" / "demo", a / "styles" / "other")
    for folder in ("styles/demo", "styles/other"):
        registry_sync.publish(store, a, folder)
    counting = CountingStore(store)
    assert registry_sync.pull(counting, b).fetched == ["styles/demo", "styles/other"]
    counting.gets.clear()
    assert registry_sync.pull(counting, b).fetched == [] and counting.gets == []
    (a / "styles" / "demo" / "style.json").write_text(json.dumps({"name": "demo v2", "status": "ready"}))
    registry_sync.publish(store, a, "styles/demo")
    assert registry_sync.pull(counting, b).fetched == ["styles/demo"]
    assert all(key.startswith("registry/styles/demo") for key in counting.gets)
    assert Registry(b).style("demo").name == "demo v2"
    # a host that published a bundle itself reads its manifest once, then skips it too
    counting.gets.clear()
    registry_sync.pull(counting, a)
    assert sorted(counting.gets) == ["registry/styles/demo.json", "registry/styles/other.json"]
    counting.gets.clear()
    assert registry_sync.pull(counting, a).fetched == [] and counting.gets == []


def test_a_miss_pulls_that_style_alone(s3_server, tiny_data_dir: Path, tmp_path: Path) -> None:
    """A job for a style this host lacks reads that style's manifest and files, not every bundle's; a
    style the store does not have costs one GET; a retired one goes."""
    store = s3_store(s3_server.endpoint, uuid.uuid4().hex)
    a, b = _hosts(tiny_data_dir, tmp_path)
    shutil.copytree(a / "styles" / "demo", a / "styles" / "other")
    for folder in ("styles/demo", "styles/other", "base/encoder"):
        registry_sync.publish(store, a, folder)
    counting = CountingStore(store)
    assert registry_sync.pull_folder(counting, b, "styles/other").fetched == ["styles/other"]
    assert counting.gets and all(key.startswith("registry/styles/other") for key in counting.gets)
    assert _same(a / "styles" / "other", b / "styles" / "other") and not (b / "styles" / "demo").exists()
    counting.gets.clear()
    assert registry_sync.pull_folder(counting, b, "styles/nosuch").fetched == []
    assert counting.gets == ["registry/styles/nosuch.json"]
    registry_sync.retire(store, "styles/other")
    assert registry_sync.pull_folder(counting, b, "styles/other").removed == ["styles/other"]
    assert not (b / "styles" / "other").exists()


def test_hosts_see_a_style_another_host_published(
    s3_server, tiny_data_dir: Path, tmp_path: Path, make_settings, make_client, redis
) -> None:
    """A training worker publishes its style (what `TrainKind.publish` calls); a stylize worker on another
    host serves it at its first job (a pull on the miss), and an API host lists it within a sync pass."""
    import time

    from service.platform.registry_sync import RegistryMirror
    from tests.s3_server import s3_settings
    from tests.service.conftest import auth
    from workers.context import JobContext
    from workers.serving.cache import ServingCache

    prefix = uuid.uuid4().hex
    a, b = _hosts(tiny_data_dir, tmp_path)
    shutil.copytree(a, tmp_path / "c" / "registry")
    shutil.copytree(a / "styles" / "demo", a / "styles" / "fresh")
    (a / "styles" / "fresh" / "style.json").write_text(json.dumps({"name": "fresh", "status": "ready"}))
    s3 = {"storage": "s3", "s3_endpoint_url": s3_server.endpoint, "s3_prefix": prefix, **s3_settings()}
    worker = ServingCache(JobContext.from_settings(make_settings(data_dir=tmp_path / "c", **s3), redis))
    api = make_client(data_dir=tmp_path / "b", registry_sync_s=0.3, **s3)
    b.joinpath("styles").mkdir(exist_ok=True)
    assert api.get("/v1/styles/fresh", headers=auth()).status_code == 404
    store = s3_store(s3_server.endpoint, prefix)
    registry_sync.publish(store, a, "base/encoder")  # the style's encoder, as its installer publishes it
    RegistryMirror(store, a).publish_style("fresh")  # host a: training done
    served = worker.serve("fresh")  # host c: pulled on the miss, that style alone
    assert served.info.name == "fresh" and (tmp_path / "c" / "registry" / "styles" / "fresh").is_dir()
    assert registry_sync.local_version(tmp_path / "c" / "registry", "base/encoder", store) is None
    deadline = time.monotonic() + 10
    while api.get("/v1/styles/fresh", headers=auth()).status_code != 200:
        assert time.monotonic() < deadline, "the API host never saw the published style"
        time.sleep(0.1)


def test_a_fresh_host_gets_the_models_another_host_installed(
    s3_server, tiny_data_dir: Path, tmp_path: Path, make_settings, redis
) -> None:
    """Host a installed the models (here: the demo registry); at its worker's start they are published.
    A new GPU host with an empty data directory serves the style after its own warm-up."""
    from tests.s3_server import s3_settings
    from workers.context import JobContext
    from workers.serving.cache import ServingCache

    s3 = {"storage": "s3", "s3_endpoint_url": s3_server.endpoint, "s3_prefix": uuid.uuid4().hex, **s3_settings()}
    shutil.copytree(tiny_data_dir / "registry", tmp_path / "a" / "registry")
    first = ServingCache(JobContext.from_settings(make_settings(data_dir=tmp_path / "a", **s3), redis))
    first.warm_up()
    assert {"base/encoder", "base/generator", "styles/demo"} <= {
        i.key[len("registry/") : -len(".json")]
        for i in first.mirror.store.list("registry/")
        if i.key.endswith(".json") and i.key.count("/") == 2
    }
    fresh = ServingCache(JobContext.from_settings(make_settings(data_dir=tmp_path / "new-host", **s3), redis))
    assert fresh.registry.style("demo") is None
    fresh.warm_up()
    assert fresh.serve("demo").info.status == "ready"
    installed, pulled = (tmp_path / host / "registry" / "styles" / "demo" for host in ("a", "new-host"))
    assert _same(installed, pulled)


def test_a_registry_pointed_at_another_store_keeps_its_bundles(s3_server, tiny_data_dir: Path, tmp_path: Path) -> None:
    """Bundles pulled from one store (bucket, prefix) are this host's own as far as another store goes:
    that store's pull never deletes them for being absent, and the host publishes them there."""
    first, second = (s3_store(s3_server.endpoint, uuid.uuid4().hex) for _ in range(2))
    a, _ = _hosts(tiny_data_dir, tmp_path)
    registry_sync.publish(first, a, "styles/demo")
    assert registry_sync.pull(second, a).removed == [] and Registry(a).style("demo") is not None
    assert "styles/demo" in registry_sync.RegistryMirror(second, a).publish_local()
    assert registry_sync.local_version(a, "styles/demo", second) is not None
    assert registry_sync.local_version(a, "styles/demo", first) is None  # now second's bundle
