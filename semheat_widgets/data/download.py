"""Download and unpack RIVAL10 (standard library HTTP, resumable, zip-slip safe).

:data:`DEFAULT_URL` is the shared link published in the RIVAL10 repository's README
(github.com/mmoayeri/RIVAL10); the environment variable ``SEMHEAT_RIVAL10_URL`` or ``url=``
override it (a mirror, a local file server). Without network access, download the archive
yourself and unzip it so that ``<dest>/RIVAL10/train/ordinary`` exists; every loader accepts
that folder.

Unpacking refuses, in one line and before writing anything: member paths that leave ``dest``
(zip-slip), encrypted members, compression methods this Python cannot read, symbolic links,
a path that is a file in one member and a folder in another (or a file already on disk where a
folder is needed, and the reverse), and archives that unpack to more than ``max_bytes``
(default :data:`DEFAULT_MAX_UNZIP_BYTES`, or ``$SEMHEAT_MAX_UNZIP_BYTES``). The byte limit is
also enforced while writing. Members are extracted into a hidden temporary folder inside
``dest`` that is moved into place only when complete, so a half-unpacked archive is never
mistaken for the dataset.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import stat
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import SemheatError
from ..safe_io import TEMP_MARKER, check_regular, writer_lock
from .rival10 import SPLITS

DEFAULT_URL = ("https://app.box.com/index.php?rm=box_download_shared_file"
               "&shared_name=iflviwl5rbdgtur1rru3t8f7v2vp0gww&file_id=f_944375052992")
"""The published archive link; ``SEMHEAT_RIVAL10_URL`` or ``url=`` override it."""
URL_ENV = "SEMHEAT_RIVAL10_URL"
LICENSE_SUMMARY = (
    "RIVAL10 may be used for non-commercial research only (University of Maryland terms) and "
    "its images are ImageNet's (ImageNet terms of access apply)")
CHUNK = 2**20
URL_SCHEMES = ("http", "https", "file")
DEFAULT_MAX_UNZIP_BYTES = 8 * 2**30
"""Unpacked-size limit: RIVAL10 is about 1.5 GB unpacked (1.2 GB zipped)."""
MAX_UNZIP_ENV = "SEMHEAT_MAX_UNZIP_BYTES"


def _manual_hint(dest: Path) -> str:
    return (f"download the RIVAL10 zip yourself and unzip it so that "
            f"{dest}/RIVAL10/train/ordinary exists")


def find_root(dest: Path) -> Path | None:
    """The unpacked ``RIVAL10`` folder under ``dest`` (at most one level down), if any.

    Hidden folders are never searched: an archive being unpacked (or left half unpacked by a
    run that was killed) lives in a hidden ``.RIVAL10.tmp-*`` folder of ``dest``.
    """
    below = (p for p in dest.glob("*/RIVAL10") if not p.parent.name.startswith("."))
    for cand in (dest / "RIVAL10", dest, *sorted(below)):
        if all((cand / s / "ordinary").is_dir() for s in SPLITS):
            return cand
    return None


def download_rival10(dest, accept_license: bool = False, url: str | None = None,
                     progress: bool = True, timeout: float = 30,
                     expected_size: int | None = None, max_bytes: int | None = None) -> Path:
    """Fetch the RIVAL10 zip into ``dest``, unpack it there and return the ``RIVAL10`` folder.

    ``accept_license=True`` is required (see :data:`LICENSE_SUMMARY`). ``url`` defaults to
    ``$SEMHEAT_RIVAL10_URL``, then :data:`DEFAULT_URL`. The download goes to
    ``dest/RIVAL10.zip.part`` and resumes from it with an HTTP Range request; its size is
    checked against Content-Length and ``expected_size`` before it becomes ``RIVAL10.zip``.
    ``url`` must be an ``http://``, ``https://`` or ``file://`` URL. Unpacking is limited to
    ``max_bytes`` (default ``$SEMHEAT_MAX_UNZIP_BYTES``, then :data:`DEFAULT_MAX_UNZIP_BYTES`);
    see :func:`safe_unzip`. An already unpacked dataset is returned at once.
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
    check_url(url)
    max_bytes = _max_unzip_bytes(max_bytes)
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
    safe_unzip(archive, dest, max_bytes=max_bytes)
    root = find_root(dest)
    if root is None:
        raise SemheatError(f"{archive} holds no RIVAL10/train/ordinary and RIVAL10/test/ordinary")
    return root


def check_url(url: str) -> str:
    """``url`` if it is an absolute ``http``/``https``/``file`` URL; a one-line error otherwise
    (checked before any network access)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise SemheatError(f"download URL {url!r} is malformed ({_first_line(exc)})") from None
    if not parts.scheme:
        raise SemheatError(f"download URL {url!r} has no scheme; write it as http://..., "
                           f"https://... or file://...")
    if parts.scheme.lower() not in URL_SCHEMES:
        raise SemheatError(f"download URL {url!r} uses {parts.scheme!r}; only http, https and "
                           f"file URLs are supported")
    if parts.scheme.lower() != "file" and not parts.hostname:
        raise SemheatError(f"download URL {url!r} names no host")
    return url


def _max_unzip_bytes(max_bytes: int | None) -> int:
    """``max_bytes``, else ``$SEMHEAT_MAX_UNZIP_BYTES``, else the default; a positive int."""
    source = "max_bytes"
    if max_bytes is None:
        env = os.environ.get(MAX_UNZIP_ENV, "").strip()
        if not env:
            return DEFAULT_MAX_UNZIP_BYTES
        source = MAX_UNZIP_ENV
        try:
            max_bytes = int(env)
        except ValueError:
            raise SemheatError(f"{MAX_UNZIP_ENV} must be a whole number of bytes, "
                               f"got {env!r}") from None
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise SemheatError(f"{source} must be a positive number of bytes, got {max_bytes!r}")
    return max_bytes


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0] or type(exc).__name__


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


def _supported_methods() -> dict[int, str]:
    """Compression methods this Python's :mod:`zipfile` can read: number -> name."""
    methods = {zipfile.ZIP_STORED: "stored"}
    for const, module, name in (("ZIP_DEFLATED", "zlib", "deflate"), ("ZIP_BZIP2", "bz2", "bzip2"),
                                ("ZIP_LZMA", "lzma", "lzma"),
                                ("ZIP_ZSTANDARD", "compression.zstd", "zstandard")):
        if hasattr(zipfile, const):
            try:
                __import__(module)
            except ImportError:
                continue
            methods[getattr(zipfile, const)] = name
    return methods


def _plan(zf: zipfile.ZipFile, archive: Path, dest_abs: Path, max_bytes: int):
    """Check every member from the central directory, before anything is written.

    Returns ``[(info, parts, is_dir)]`` in archive order (``parts``: the normalised relative
    path); raises a one-line :class:`SemheatError` for the first member that is refused.
    """
    supported = _supported_methods()
    plan, files, dirs, total = [], {}, {}, 0
    for info in zf.infolist():
        shown = repr(info.filename)
        name = PurePosixPath(info.filename.replace("\\", "/"))
        target = (dest_abs / name).resolve()
        if name.is_absolute() or ".." in name.parts or not target.is_relative_to(dest_abs):
            raise SemheatError(f"{archive}: refusing unsafe member path {shown}")
        is_dir = info.is_dir()
        if not name.parts:
            if is_dir:
                continue  # "./": dest itself
            raise SemheatError(f"{archive}: refusing unsafe member path {shown}")
        if info.flag_bits & 0x1:
            raise SemheatError(f"{archive}: member {shown} is encrypted; password-protected "
                               f"archives are not supported")
        if info.compress_type not in supported:
            raise SemheatError(f"{archive}: member {shown} uses compression method "
                               f"{info.compress_type}, which this Python cannot read "
                               f"(supported: {', '.join(supported.values())})")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise SemheatError(f"{archive}: refusing symbolic link member {shown}")
        parts = name.parts
        if is_dir:
            dirs.setdefault(parts, shown)
        elif parts in files:
            raise SemheatError(f"{archive}: member path {shown} appears twice")
        else:
            files[parts] = shown
            total += info.file_size
        for k in range(1, len(parts)):
            dirs.setdefault(parts[:k], shown)
        plan.append((info, parts, is_dir))
    for parts, shown in files.items():
        if parts in dirs:
            raise SemheatError(f"{archive}: member {shown} is a file, but {dirs[parts]} needs "
                               f"a folder at that path")
    if total > max_bytes:
        raise SemheatError(f"{archive} unpacks to {total:,} bytes, over the limit of "
                           f"{max_bytes:,} (pass max_bytes= or set {MAX_UNZIP_ENV} to allow "
                           f"more)")
    _check_disk(plan, dest_abs, archive)
    return plan


def _check_disk(plan, dest_abs: Path, archive: Path) -> None:
    """Refuse members that would need a folder where ``dest`` holds something else (a file, a
    link), or a file where ``dest`` holds a folder or a non-regular file."""
    kinds: dict[tuple, int | None] = {}

    def mode(parts: tuple):
        if parts not in kinds:
            try:
                kinds[parts] = os.lstat(dest_abs.joinpath(*parts)).st_mode
            except FileNotFoundError:
                kinds[parts] = None
            except OSError as exc:
                raise SemheatError(f"{dest_abs.joinpath(*parts)}: cannot check it before "
                                   f"unpacking {archive} ({exc.strerror or exc})") from None
        return kinds[parts]

    for info, parts, is_dir in plan:
        for k in range(1, len(parts) + is_dir):
            m = mode(parts[:k])
            if m is None:
                break  # nothing below a missing path exists either
            if not stat.S_ISDIR(m):
                raise SemheatError(f"{archive}: member {info.filename!r} needs a folder at "
                                   f"{dest_abs.joinpath(*parts[:k])}, which exists and is not "
                                   f"one; move it away and run again")
        else:
            if is_dir:
                continue
            m = mode(parts)
            if m is not None and not stat.S_ISREG(m):
                raise SemheatError(f"{archive}: member {info.filename!r} would replace "
                                   f"{dest_abs.joinpath(*parts)}, which exists and is not a "
                                   f"regular file; move it away and run again")


def _extract(zf: zipfile.ZipFile, plan, tmp: Path, max_bytes: int, archive: Path) -> None:
    """Write the planned members under ``tmp``, counting the bytes actually written."""
    made, written = {()}, 0
    for info, parts, is_dir in plan:
        folder = parts if is_dir else parts[:-1]
        if folder not in made:
            tmp.joinpath(*folder).mkdir(parents=True, exist_ok=True)
            made.update(folder[:k] for k in range(1, len(folder) + 1))
        if is_dir:
            continue
        target, size = tmp.joinpath(*parts), 0
        try:
            with zf.open(info) as src, open(target, "xb") as out:
                while chunk := src.read(CHUNK):
                    size += len(chunk)
                    if size > info.file_size or written + size > max_bytes:
                        raise SemheatError(
                            f"{archive}: member {info.filename!r} unpacks to more than "
                            + (f"its declared {info.file_size:,} bytes" if size > info.file_size
                               else f"the limit of {max_bytes:,} bytes in all")
                            + "; refusing it")
                    out.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        written += size


def _move_into(src: Path, dst: Path) -> None:
    """Move the finished tree ``src`` into the folder ``dst``. Folders ``dst`` lacks are
    renamed in whole, after everything else, so a dataset folder appears complete or not at
    all; existing folders are merged, existing files replaced."""
    new = []
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            if target.is_dir() and not target.is_symlink():
                _move_into(Path(entry.path), target)
            else:
                new.append((entry.path, target))
        else:
            os.replace(entry.path, target)
    for path, target in new:
        os.replace(path, target)


def safe_unzip(archive: Path, dest: Path, max_bytes: int | None = None) -> None:
    """Extract ``archive`` into ``dest`` safely (see the module docstring for what is refused).

    ``max_bytes`` caps the unpacked size (default ``$SEMHEAT_MAX_UNZIP_BYTES``, then
    :data:`DEFAULT_MAX_UNZIP_BYTES`). Nothing appears in ``dest`` unless every member was
    written: the archive is unpacked into a hidden ``.NAME.tmp-*`` folder inside ``dest``
    (removed on failure, and by the next run if this one was killed) and moved into place.
    """
    archive, max_bytes = Path(archive), _max_unzip_bytes(max_bytes)
    check_regular(archive, "zip archive")  # a FIFO would hang ZipFile()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest_abs = dest.resolve()
    stem = archive.name.split(".", 1)[0] or "archive"
    with writer_lock(dest_abs / stem, command=f"unzip {archive.name}"):
        for stale in dest_abs.glob(f".{stem}.tmp-*"):  # left by a run that was killed
            if stale.is_dir() and not stale.is_symlink() and (stale / TEMP_MARKER).exists():
                shutil.rmtree(stale, ignore_errors=True)
        tmp = dest_abs / f".{stem}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with zipfile.ZipFile(archive) as zf:
                plan = _plan(zf, archive, dest_abs, max_bytes)
                tmp.mkdir()
                (tmp / TEMP_MARKER).touch()
                _extract(zf, plan, tmp, max_bytes, archive)
            (tmp / TEMP_MARKER).unlink()
            _move_into(tmp, dest_abs)
        except zipfile.BadZipFile as exc:
            raise SemheatError(f"{archive} is not a valid zip file ({_first_line(exc)}); "
                               f"delete it and run again") from None
        except SemheatError:
            raise
        except OSError as exc:  # disk full, permissions, a name the file system refuses
            raise SemheatError(f"cannot unpack {archive} into {dest}: "
                               f"{exc.strerror or _first_line(exc)}") from None
        except Exception as exc:  # zlib.error, lzma.LZMAError, EOFError …: damaged data
            raise SemheatError(f"{archive} is damaged ({type(exc).__name__}: "
                               f"{_first_line(exc)}); delete it and run again") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
