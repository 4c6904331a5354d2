"""Building the grader image (docker/Dockerfile) through the Docker SDK.

The build context is staged in a temporary folder with only what the image needs: the
Dockerfile, the uv binary, the host's CA bundle, pyproject.toml, uv.lock and the autograder package. Nothing
else of the course (hidden tests, references, the gradebook) can reach the image, even
by a careless COPY. Docker's layer cache keeps the heavy `uv sync` layer while uv.lock
is unchanged, so a rebuild after a change to the worker takes seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from autograder.sandbox.container import (ENGINE_LABEL, IMAGE, LOCK_LABEL, PLATFORM, DockerUnavailable, client,
                                          engine_digest, lock_digest)


def uv_binary() -> Path:
    """The uv executable (`uv run` names itself in $UV); a shim script will not do in the image."""
    for candidate in (os.environ.get("UV"), shutil.which("uv")):
        if candidate and Path(candidate).is_file() and Path(candidate).read_bytes()[:4] == b"\x7fELF":
            return Path(candidate)
    raise DockerUnavailable("cannot find the uv executable to put in the image; run through `uv run course ...`")


def stage_context(folder: Path, root: Path = PLATFORM) -> Path:
    root = Path(root)
    shutil.copy2(root / "docker" / "Dockerfile", folder / "Dockerfile")
    shutil.copy2(uv_binary(), folder / "uv")
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy2(root / name, folder / name)
    bundle = os.environ.get("SSL_CERT_FILE", "")
    (folder / "build-ca.crt").write_bytes(Path(bundle).read_bytes() if bundle and Path(bundle).is_file() else b"")
    shutil.copytree(root / "autograder", folder / "autograder",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return folder


def build_image(base: str | None = None, tag: str = IMAGE,
                on_line: Callable[[str], None] = print) -> str:
    """Build and label the grader image; returns its id. `base` replaces the Dockerfile's
    BASE (an image already in the engine when there is no registry)."""
    engine = client()
    with tempfile.TemporaryDirectory(prefix="grader-image-") as tmp:
        context = stage_context(Path(tmp))
        labels = {LOCK_LABEL: lock_digest(), ENGINE_LABEL: engine_digest()}
        stream = engine.api.build(path=str(context), tag=tag, buildargs={"BASE": base} if base else None,
                                  labels=labels, network_mode="host", rm=True, forcerm=True, decode=True)
        image_id = ""
        for chunk in stream:
            if "error" in chunk:
                raise DockerUnavailable(f"building {tag} failed: {chunk['error'].strip()}")
            text = chunk.get("stream", "").rstrip()
            if text:
                on_line(text)
            image_id = chunk.get("aux", {}).get("ID", image_id)
    return image_id
