"""Service commands of the `agilegan` CLI: serve, worker, up (everything local), demo-registry."""

from __future__ import annotations

import argparse
import logging
import os
import sys


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
    from service.platform.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    settings = load_settings(host=args.host, port=args.port, api_workers=args.workers)
    os.environ["AGILEGAN_HOST"], os.environ["AGILEGAN_PORT"] = settings.host, str(settings.port)
    uvicorn.run(
        "service.api.app:create_app",
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
    from workers.launcher.up import run_up

    run_up()


def cmd_worker(args: argparse.Namespace) -> None:
    from service.platform.job_kinds import TRAIN
    from workers.launcher.style_install import lpips_for_training
    from workers.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    if TRAIN.queue in queues:
        lpips_for_training(settings)  # before the first job: a training job never downloads
    run_worker(settings, queues, burst=args.burst)


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
    from workers.launcher.demo import demo_registry

    settings = load_settings()
    wrote = demo_registry(settings.registry_dir, size=args.size, tiny=args.tiny)
    print(f"demo registry {'written' if wrote else 'already present'} in {settings.registry_dir}")


def cmd_styles_install(args: argparse.Namespace) -> None:
    from workers.launcher.first_run import install_public_style
    from workers.launcher.style_install import InstallError

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
    from workers.launcher.first_run import progress_printer
    from workers.launcher.style_install import InstallError, install_lpips

    settings = load_settings()
    try:
        changed = install_lpips(
            settings.registry_dir,
            settings.data_dir / "downloads",
            mirror=args.mirror or settings.download_mirror,
            timeout=settings.download_timeout_s,
            progress=progress_printer(),
        )
    except InstallError as e:
        print(f"agilegan: error: {e}", file=sys.stderr)
        raise SystemExit(1) from e
    from service.platform.registry import Registry

    where = Registry(settings.registry_dir).lpips_dir
    print(f"LPIPS-VGG {'installed' if changed else 'is already installed'} in {where}")
