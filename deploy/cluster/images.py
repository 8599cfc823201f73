"""Images for the node: built with podman, moved into containerd (no registry is reachable).

The cluster's own images (pause, CoreDNS, the device plugin) are single static binaries FROM
scratch; the project's service images come from ``make images``. ``load`` moves any of them
from podman's store into containerd's ``k8s.io`` namespace, where the kubelet finds them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from deploy.cluster import layout
from servoscope.settings import REPO_ROOT

DEVICE_PLUGIN_SOURCE = REPO_ROOT / "deploy" / "device-plugin"


def podman_env() -> dict[str, str]:
    """podman with the project's containers.conf (tools/containers.sh writes it)."""
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env:
        containers = str(REPO_ROOT / "tools" / "containers.sh")
        if subprocess.run([containers, "--check"], capture_output=True).returncode != 0:
            subprocess.run([containers], check=True)  # installs podman, makes the base image
        conf = subprocess.run(
            [str(REPO_ROOT / "tools" / "containers.sh"), "--conf"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        env["CONTAINERS_CONF"] = conf
    return env


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], check=True, capture_output=True, text=True, env=podman_env()
    )


def pinned(name: str) -> str:
    """A setting of tools/versions.env, the one place external versions are pinned."""
    for line in (REPO_ROOT / "tools" / "versions.env").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip('"')
    raise RuntimeError(f"tools/versions.env has no {name}")


def base_image() -> str:
    """The project's Debian base image (tools/containers.sh makes it; BASE_IMAGE pins it)."""
    return pinned("BASE_IMAGE")


def exists(image: str) -> bool:
    return (
        subprocess.run(
            ["podman", "image", "exists", image], env=podman_env(), capture_output=True
        ).returncode
        == 0
    )


def _build(containerfile: Path, target: str | None, files: dict[str, str], tag: str) -> str:
    with tempfile.TemporaryDirectory(prefix="servoscope-image-") as context:
        for name, source in files.items():
            shutil.copy2(source, Path(context) / name)
        target_args = ["--target", target] if target else []
        base = f"BASE={base_image()}"
        podman(
            "build", "--quiet", "--pull=never", "--layers", "--file", str(containerfile),
            *target_args, "--build-arg", base,
            "--label", "org.opencontainers.image.source=https://github.com/servoscope/servoscope",
            "--tag", tag, context,
        )  # fmt: skip
    return tag


def cluster_images() -> dict[str, str]:
    """Builds the pause and CoreDNS images; returns name -> image."""
    tools = layout.tool_env()
    bin_dir = Path(tools["KUBE_BIN"])
    wanted = {
        "pause": (f"{layout.NODE_IMAGES}/pause:{tools['KUBERNETES_VERSION']}", "pause"),
        "coredns": (f"{layout.NODE_IMAGES}/coredns:{coredns_version(bin_dir)}", "coredns"),
    }
    for target, (image, binary) in wanted.items():
        # Always built: podman's layer cache makes an unchanged image a matter of seconds.
        source = os.path.realpath(bin_dir / binary)
        _build(Path(__file__).with_name("Containerfile"), target, {binary: source}, image)
    return {name: image for name, (image, _) in wanted.items()}


def coredns_version(bin_dir: Path) -> str:
    # The cache names each build <tool>-<version>; the symlink points at the pinned one.
    return os.path.basename(os.path.realpath(bin_dir / "coredns")).removeprefix("coredns-")


def device_plugin_image() -> str:
    """Builds the device plugin with this machine's Go and wraps it in an image."""
    binary = Path(tempfile.mkdtemp(prefix="servoscope-device-plugin-")) / "plugin"
    try:
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "."],
            cwd=DEVICE_PLUGIN_SOURCE,
            check=True,
            env={**os.environ, "CGO_ENABLED": "0"},
        )
        tag = f"{layout.IMAGE_PREFIX}/device-plugin:{_digest_tag(binary)}"
        if not exists(tag):
            _build(
                DEVICE_PLUGIN_SOURCE / "Containerfile",
                None,
                {"servoscope-device-plugin": str(binary)},
                tag,
            )
        return tag
    finally:
        shutil.rmtree(binary.parent)


def _digest_tag(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def ctr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """ctr against the cluster's containerd, in the namespace the kubelet uses."""
    argv = [layout.binary("ctr"), "--address", str(layout.CONTAINERD_SOCKET), "-n", "k8s.io"]
    return subprocess.run([*argv, *args], check=check, capture_output=True, text=True)


def loaded() -> set[str]:
    return set(ctr("images", "list", "--quiet").stdout.split())


def podman_ids(images: list[str]) -> dict[str, str]:
    """Each image's ID in podman's store (its config's digest: it changes on a rebuild)."""
    ids = podman("image", "inspect", "--format", "{{.Id}}", *images).stdout.split()
    return dict(zip(images, ids, strict=True))


def load(images: list[str]) -> None:
    """Copies images from podman into containerd: those it does not hold yet, and those
    rebuilt since they were copied (a tag names another image now, e.g. after `make
    images` while the cluster runs), which would otherwise stay stale under their tag.

    One multi-image archive, so the layers the service images share are written once.
    """
    record = layout.STATE_DIR / "images-loaded.json"  # tag -> podman ID when it was copied
    copied = json.loads(record.read_text()) if record.exists() else {}
    ids, present = podman_ids(images), loaded()
    stale = [image for image in images if image not in present or copied.get(image) != ids[image]]
    if not stale:
        return
    with tempfile.TemporaryDirectory(prefix="servoscope-images-", dir=layout.STATE_DIR) as tmp:
        archive = Path(tmp) / "images.tar"
        podman("save", "--quiet", "--multi-image-archive", "--format", "docker-archive",
               "--output", str(archive), *stale)  # fmt: skip
        ctr("images", "import", str(archive))  # a tag it holds is moved to the new image
    record.write_text(json.dumps({**copied, **{image: ids[image] for image in stale}}))
