"""The first run's style: the public style `AGILEGAN_FIRST_RUN_STYLE` installed when the network allows,
with download progress on stderr; the offline demo style otherwise.

Imports of the install code stay inside the functions: `agilegan up` runs them in its long-lived
supervisor process, which should not hold torch."""

from __future__ import annotations

import sys

from service.platform.contract import StyleState


def install_public_style(settings, name: str, mirror: str | None):
    """Install a public style with progress on stderr: a bar on a terminal, a line per 10 % otherwise."""
    from workers.launcher.style_install import install_style

    return install_style(
        name,
        settings.registry_dir,
        settings.data_dir / "downloads",
        mirror=mirror,
        timeout=settings.download_timeout_s,
        progress=progress_printer(),
    )


def progress_printer():
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


def first_run_style(settings, registry) -> str:
    """Install `settings.first_run_style` when the registry lacks it and the network allows; the
    style the first curl should use ("demo" when it could not be installed or is turned off)."""
    from workers.launcher.style_install import InstallError

    name = settings.first_run_style.strip()
    if not name:
        return "demo"
    info = registry.style(name)
    if info is not None and info.status == StyleState.READY:
        return name
    from models.weights.downloads import CATALOG, STYLE_PRESETS, mirrored, reachable

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
