"""Download and unpack RIVAL10 (standard library HTTP, resumable, zip-slip safe).

:data:`DEFAULT_URL` is the shared link published in the RIVAL10 repository's README
(github.com/mmoayeri/RIVAL10); the environment variable ``SEMHEAT_RIVAL10_URL`` or ``url=``
override it (a mirror, a local file server). Without network access, download the archive
yourself and unzip it so that ``<dest>/RIVAL10/train/ordinary`` exists; every loader accepts
that folder.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import SemheatError
from .rival10 import SPLITS

DEFAULT_URL = ("https://app.box.com/index.php?rm=box_download_shared_file"
               "&shared_name=iflviwl5rbdgtur1rru3t8f7v2vp0gww&file_id=f_944375052992")
"""The published archive link; ``SEMHEAT_RIVAL10_URL`` or ``url=`` override it."""
URL_ENV = "SEMHEAT_RIVAL10_URL"
LICENSE_SUMMARY = (
    "RIVAL10 may be used for non-commercial research only (University of Maryland terms) and "
    "its images are ImageNet's (ImageNet terms of access apply)")
CHUNK = 2**20


def _manual_hint(dest: Path) -> str:
    return (f"download the RIVAL10 zip yourself and unzip it so that "
            f"{dest}/RIVAL10/train/ordinary exists")


def find_root(dest: Path) -> Path | None:
    """The unpacked ``RIVAL10`` folder under ``dest`` (at most one level down), if any."""
    for cand in (dest / "RIVAL10", dest, *sorted(dest.glob("*/RIVAL10"))):
        if all((cand / s / "ordinary").is_dir() for s in SPLITS):
            return cand
    return None


def download_rival10(dest, accept_license: bool = False, url: str | None = None,
                     progress: bool = True, timeout: float = 30,
                     expected_size: int | None = None) -> Path:
    """Fetch the RIVAL10 zip into ``dest``, unpack it there and return the ``RIVAL10`` folder.

    ``accept_license=True`` is required (see :data:`LICENSE_SUMMARY`). ``url`` defaults to
    ``$SEMHEAT_RIVAL10_URL``, then :data:`DEFAULT_URL`. The download goes to
    ``dest/RIVAL10.zip.part`` and resumes from it with an HTTP Range request; its size is
    checked against Content-Length and ``expected_size`` before it becomes ``RIVAL10.zip``.
    An already unpacked dataset is returned at once.
    """
    if not accept_license:
        raise SemheatError(f"{LICENSE_SUMMARY}; pass accept_license=True to agree and download")
    dest = Path(dest).expanduser()
    if (root := find_root(dest)) is not None:
        return root
    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    if not url:
        raise SemheatError(f"no RIVAL10 download URL: set {URL_ENV} or pass url=, or "
                           f"{_manual_hint(dest)}")
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "RIVAL10.zip"
    if not archive.is_file():
        part = dest / "RIVAL10.zip.part"
        _fetch(url, part, dest, progress, timeout)
        size = part.stat().st_size
        if expected_size is not None and size != expected_size:
            part.unlink()
            raise SemheatError(f"{url}: downloaded {size} bytes, expected {expected_size}; the "
                               "partial file was removed, run again to restart")
        os.replace(part, archive)
    safe_unzip(archive, dest)
    root = find_root(dest)
    if root is None:
        raise SemheatError(f"{archive} holds no RIVAL10/train/ordinary and RIVAL10/test/ordinary")
    return root


def _fetch(url: str, part: Path, dest: Path, progress: bool, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming after the bytes already there."""
    from tqdm.auto import tqdm

    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # nothing after `offset`: a complete or a stale partial file
            whole = re.match(r"bytes \*/(\d+)", (exc.headers or {}).get("Content-Range") or "")
            if whole and int(whole.group(1)) == offset:
                return
            part.unlink()
            raise SemheatError(f"{url}: server refused to resume at byte {offset}; the partial "
                               "file was removed, run again to restart") from None
        raise SemheatError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise SemheatError(f"network unreachable, cannot download {url} ({reason}); "
                           f"{_manual_hint(dest)}") from None
    with response:
        length = response.headers.get("Content-Length")
        if offset and response.status == 206:
            start = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not start or int(start.group(1)) != offset:
                raise SemheatError(f"{url}: server resumed at the wrong byte, expected {offset}")
        else:
            offset = 0  # the server sent the whole file
        total = offset + int(length) if length is not None else None
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, disable=not progress,
                   desc="RIVAL10.zip")
        with open(part, "ab" if offset else "wb") as f, bar:
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise SemheatError(f"{url}: download interrupted after {f.tell()} bytes "
                                   f"({type(exc).__name__}); run again to resume") from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise SemheatError(f"{url}: got {size} of {total} bytes; run again to resume")


def safe_unzip(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``, refusing members that would land outside it."""
    dest_abs = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                name = PurePosixPath(info.filename.replace("\\", "/"))
                target = (dest_abs / name).resolve()
                if name.is_absolute() or ".." in name.parts or not target.is_relative_to(dest_abs):
                    raise SemheatError(f"{archive}: refusing unsafe member path {info.filename!r}")
            zf.extractall(dest_abs)
    except zipfile.BadZipFile as exc:
        raise SemheatError(f"{archive} is not a valid zip file ({exc}); delete it and run again") \
            from None
