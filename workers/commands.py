"""Service commands of the `agilegan` CLI: serve, worker, up (everything local), demo-registry."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the HTTP API (uvicorn)")
    serve.add_argument("--host", help="default AGILEGAN_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, help="default AGILEGAN_PORT (8000)")
    serve.add_argument("--workers", type=int, help="uvicorn processes (default AGILEGAN_API_WORKERS)")
    serve.set_defaults(handler=cmd_serve)

    worker = sub.add_parser("worker", help="run a GPU/CPU worker on the given queues")
    worker.add_argument("--queues", default="stylize", help="comma-separated: stylize, train, video")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.set_defaults(handler=cmd_worker)

    alive = sub.add_parser("worker-alive", help="exit 0 when a worker of this host is registered (healthcheck)")
    alive.set_defaults(handler=cmd_worker_alive)

    up = sub.add_parser(
        "up",
        help="run everything locally, supervised: Redis (if none answers), the demo style, a stylize, a train "
        "and a video worker, and the API",
    )
    up.set_defaults(handler=cmd_up)

    styles = sub.add_parser("styles", help="public ready-made styles (FaceStylor releases)")
    ssub = styles.add_subparsers(dest="styles_command", required=True)
    inst = ssub.add_parser("install", help="download (resumable, checksum-verified), import and register a style")
    inst.add_argument("name", help="toonify, oil, sketch, cartoon, bitmoji or comic (`agilegan weights list`)")
    inst.add_argument("--mirror", help="base URL with the release files (default AGILEGAN_DOWNLOAD_MIRROR)")
    inst.set_defaults(handler=cmd_styles_install)

    lpips = sub.add_parser("lpips", help="LPIPS-VGG for style training's consistency term")
    lsub = lpips.add_subparsers(dest="lpips_command", required=True)
    linst = lsub.add_parser("install", help="download (resumable, checksum-verified) and import LPIPS-VGG")
    linst.add_argument("--mirror", help="base URL with the two files (default AGILEGAN_DOWNLOAD_MIRROR)")
    linst.set_defaults(handler=cmd_lpips_install)

    demo = sub.add_parser("demo-registry", help="write the random-weight demo encoder and style if absent")
    demo.add_argument("--size", type=int, default=1024, help="demo generator resolution")
    demo.add_argument("--tiny", action="store_true", help="test-sized models")
    demo.set_defaults(handler=cmd_demo_registry)


def load_settings(**overrides):
    """The service settings from the environment (AGILEGAN_*), with the CLI's overrides."""
    from service.config import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    settings = load_settings(host=args.host, port=args.port, api_workers=args.workers)
    os.environ["AGILEGAN_HOST"], os.environ["AGILEGAN_PORT"] = settings.host, str(settings.port)
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.api_workers,
        log_level="info",
        timeout_graceful_shutdown=10,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: any local client could then pose
        # as any address (and reset its failed-login budget). Only configured proxies are believed.
        proxy_headers=bool(settings.trusted_proxies.strip()),
        forwarded_allow_ips=settings.trusted_proxies.strip() or "",
    )


def cmd_up(args: argparse.Namespace) -> None:
    from workers.up import run_up

    run_up()


def cmd_worker(args: argparse.Namespace) -> None:
    from workers.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run_worker(load_settings(), [q.strip() for q in args.queues.split(",") if q.strip()], burst=args.burst)


def cmd_worker_alive(args: argparse.Namespace) -> None:
    from redis import Redis
    from rq import Worker

    settings = load_settings()
    host = os.uname().nodename
    workers = Worker.all(connection=Redis.from_url(settings.redis_url, socket_connect_timeout=2))
    if not any(w.name.startswith(f"{host}.") for w in workers):
        print(f"no live worker of {host} is registered", file=sys.stderr)
        raise SystemExit(1)
    print("ok")


def cmd_demo_registry(args: argparse.Namespace) -> None:
    from workers.demo import demo_registry

    settings = load_settings()
    wrote = demo_registry(settings.registry_dir, size=args.size, tiny=args.tiny)
    print(f"demo registry {'written' if wrote else 'already present'} in {settings.registry_dir}")


def cmd_styles_install(args: argparse.Namespace) -> None:
    from workers.style_install import InstallError

    settings = load_settings()
    try:
        installed = install_public_style(settings, args.name, args.mirror or settings.download_mirror)
    except InstallError as e:
        print(f"agilegan: error: {e}", file=sys.stderr)
        raise SystemExit(1) from e
    if installed.changed:
        print(f"installed style {installed.style!r} (encoder {installed.encoder}) in {settings.registry_dir}")
    else:
        print(f"style {installed.style!r} is already installed in {settings.registry_dir}")


def cmd_lpips_install(args: argparse.Namespace) -> None:
    from workers.style_install import InstallError, install_lpips

    settings = load_settings()
    try:
        changed = install_lpips(
            settings.registry_dir,
            settings.data_dir / "downloads",
            mirror=args.mirror or settings.download_mirror,
            timeout=settings.download_timeout_s,
            progress=_progress_printer(),
        )
    except InstallError as e:
        print(f"agilegan: error: {e}", file=sys.stderr)
        raise SystemExit(1) from e
    from service.registry import Registry

    where = Registry(settings.registry_dir).lpips_dir
    print(f"LPIPS-VGG {'installed' if changed else 'is already installed'} in {where}")


def install_public_style(settings, name: str, mirror: str | None):
    """Install a public style with progress on stderr: a bar on a terminal, a line per 10 % otherwise."""
    from workers.style_install import install_style

    return install_style(
        name,
        settings.registry_dir,
        settings.data_dir / "downloads",
        mirror=mirror,
        timeout=settings.download_timeout_s,
        progress=_progress_printer(),
    )


def _progress_printer():
    """Download progress on stderr: a bar on a terminal, a line per 10 % otherwise."""
    tty = sys.stderr.isatty()
    shown: dict[str, int] = {}

    def progress(file_name: str, done: int, total: int | None) -> None:
        share = int(100 * done / total) if total else None
        if tty:
            bar = "#" * ((share or 0) // 5)
            tail = f"{share:3d} % [{bar:<20}]" if share is not None else ""
            print(f"\r{file_name[:48]}: {done / 1e6:8.1f} MB {tail}", end="", file=sys.stderr, flush=True)
            if total and done >= total:
                print(file=sys.stderr)
        elif share is not None and share // 10 > shown.get(file_name, -1):
            shown[file_name] = share // 10
            print(f"{file_name}: {done / 1e6:.1f} of {total / 1e6:.1f} MB ({share} %)", file=sys.stderr, flush=True)

    return progress


def redis_answers(url: str) -> bool:
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1).ping())
    except (RedisError, OSError):
        return False


def redis_argv(url: str, directory: Path) -> list[str]:
    """The redis-server command for a local `url`, its append-only file in `directory`; raises when the
    URL is not local or redis-server is not installed."""
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"Redis at {url} does not answer, and it is not local: start it first")
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install it (Debian: apt-get install -y redis-server)")
    directory.mkdir(parents=True, exist_ok=True)
    # fmt: off
    return [
        binary, "--port", str(parsed.port or 6379), "--bind", "127.0.0.1", "--dir", str(directory.resolve()),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction",
        "--loglevel", "warning", "--logfile", str(directory.resolve() / "redis.log"),
    ]
    # fmt: on


def start_redis(url: str, directory: Path) -> subprocess.Popen:
    """Start a local redis-server for `url` (AOF on, in `directory`), returned once it answers."""
    proc = subprocess.Popen(redis_argv(url, directory), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_redis(url)
    except RuntimeError:
        proc.terminate()
        proc.wait()
        raise
    return proc


def wait_for_redis(url: str, timeout_s: float = 5.0) -> None:
    """Return once Redis at `url` answers; RuntimeError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not come up at {url}")
        time.sleep(0.05)


def first_run_style(settings, registry) -> str:
    """Install `settings.first_run_style` when the registry lacks it and the network allows; the
    style the first curl should use ("demo" when it could not be installed or is turned off)."""
    from workers.style_install import InstallError

    name = settings.first_run_style.strip()
    if not name:
        return "demo"
    info = registry.style(name)
    if info is not None and info.status == "ready":
        return name
    from models.downloads import CATALOG, STYLE_PRESETS, mirrored, reachable

    preset = STYLE_PRESETS.get(name)
    url = mirrored(CATALOG[preset.release], settings.download_mirror).url if preset else ""
    if preset and not reachable(url, settings.download_timeout_s):
        print(f"could not reach {url.split('/')[2]}: serving the offline demo style 'demo' instead", flush=True)
        return "demo"
    print(f"installing the public style {name!r} (opt out: AGILEGAN_FIRST_RUN_STYLE=)", flush=True)
    try:
        install_public_style(settings, name, settings.download_mirror)
    except InstallError as e:
        print(f"could not install {name!r} ({e}); serving the offline demo style 'demo' instead", flush=True)
        return "demo"
    return name
