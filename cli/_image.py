"""`edgectl image build-demo`: the project's small HTTP test image, built offline.

No registry is reachable where edgeplane is tested, so the demo image is assembled from the
host's Debian `busybox-static` (one static binary that is also `sh`, `httpd`, `wget`, ...) and
handed to `docker import`. Its default command writes a page naming the pod and serves it with
busybox `httpd` on port 80.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import click

__all__ = ["DEMO_TAG", "ImageBuildError", "build_demo_image", "image_group"]

# The tag tests, demos and scenarios refer to (see issue 5).
DEMO_TAG = "edgeplane/demo:latest"
# Debian's busybox-static installs its static binary here.
BUSYBOX_PATH = "/bin/busybox"
# Label on the image so a rebuild can tell our image from anything else with the same tag.
DEMO_LABEL = "io.edgeplane.demo-image"

# sh is PID 1: it traps SIGTERM so `docker stop` (graceful deletion) ends the pod at once rather
# than after the whole grace period, which is what a well-behaved server does.
_ENTRYPOINT = """#!/bin/sh
name="${POD_NAME:-$(hostname)}"
mkdir -p /www
printf '<html><body><h1>edgeplane demo</h1><p>pod: %s</p></body></html>\\n' "$name" > /www/index.html
echo "demo: serving pod $name on port ${PORT:-80}"
httpd -f -p "${PORT:-80}" -h /www &
child=$!
trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM INT
wait $child
"""

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


class ImageBuildError(RuntimeError):
    """The demo image could not be built (no busybox-static, no Docker engine, ...)."""


def _applets(busybox: str) -> list[str]:
    try:
        out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImageBuildError(f"cannot run {busybox} --list: {exc}") from exc
    return sorted({name.strip() for name in out.split() if name.strip() and "/" not in name})


def _rootfs_tar(busybox: str) -> bytes:
    """A root filesystem: /bin/busybox, one symlink per applet, /www, /tmp and the entry script."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(path: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(path)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)

        def add_file(path: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "etc", "www", "root", "proc", "sys", "dev", "usr", "usr/bin", "var"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        with open(busybox, "rb") as f:
            add_file("bin/busybox", f.read(), 0o755)
        for applet in _applets(busybox):
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        add_file("entrypoint.sh", _ENTRYPOINT.encode(), 0o755)
        add_file("etc/passwd", _PASSWD.encode())
        add_file("etc/group", _GROUP.encode())
        add_file("www/index.html", b"edgeplane demo\n")
    return buf.getvalue()


def build_demo_image(tag: str = DEMO_TAG, *, force: bool = False,
                     busybox: str = BUSYBOX_PATH) -> str:
    """Build the demo image with `docker import`; return its image ID.

    Idempotent: when `tag` already names an image built by this function, nothing is done unless
    `force`. Needs only the local Docker engine and `busybox` (Debian: apt-get install
    busybox-static); never contacts a registry.
    """
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ImageBuildError(f"no Docker engine answers: {exc}") from exc
    try:
        if not force:
            try:
                image = client.images.get(tag)
            except docker.errors.ImageNotFound:
                pass
            else:
                if (image.labels or {}).get(DEMO_LABEL) == "1":
                    return str(image.id)
        if not os.access(busybox, os.X_OK):
            raise ImageBuildError(
                f"{busybox} not found: install Debian's busybox-static (apt-get install busybox-static)")
        repository, _, version = tag.rpartition(":")
        if not repository or "/" in version:
            repository, version = tag, "latest"
        changes = [
            'CMD ["/bin/sh", "/entrypoint.sh"]',
            "EXPOSE 80/tcp",
            "WORKDIR /",
            "ENV PATH=/bin:/usr/bin",
            f"LABEL {DEMO_LABEL}=1",
        ]
        try:
            client.api.import_image_from_data(
                _rootfs_tar(busybox), repository=repository, tag=version, changes=changes)
            image = client.images.get(tag)
        except docker.errors.DockerException as exc:
            raise ImageBuildError(f"docker import failed: {exc}") from exc
        return str(image.id)
    finally:
        client.close()


@click.group("image", help="Container images used by edgeplane's tests and demos.")
def image_group() -> None:
    pass


@image_group.command("build-demo", help="Build the offline demo image (busybox httpd on port 80).")
@click.option("--tag", default=DEMO_TAG, show_default=True, help="Image tag to create.")
@click.option("--force", is_flag=True, help="Rebuild even when the tag already exists.")
def build_demo_command(tag: str, force: bool) -> None:
    try:
        image_id = build_demo_image(tag, force=force)
    except ImageBuildError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{tag} {image_id}")
