"""Hostile data: decompression bombs, FIFOs, hostile zip archives and bad download URLs.

Every refusal is one :class:`SemheatError` line naming the culprit; a dataset loaded with
``on_error="skip"`` leaves such entries out instead of failing; an archive that is refused
leaves nothing that looks like a dataset behind. Fixtures are built here (no network).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers.guards import no_hang
from helpers.fake_rival10 import make_fake_rival10
from PIL import Image

from semheat_widgets.data import download
from semheat_widgets.data.download import (MAX_UNZIP_ENV, download_rival10, find_root,
                                           safe_unzip)
from semheat_widgets.data.folder import ImageFolderDataset
from semheat_widgets.engine.image_files import image_size, load_image, open_rgb
from semheat_widgets.data.rival10 import Rival10Dataset, decode_mask
from semheat_widgets.errors import SemheatError
from semheat_widgets.safe_io import TEMP_MARKER

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message and message.strip() == message
    return message


def _png(path: Path, wh=(100, 100)) -> Path:
    Image.new("RGB", wh, (200, 30, 30)).save(path)
    return path


@pytest.fixture
def small_pixel_limit(monkeypatch):
    """PIL's pixel limit lowered to 2000: a 100 x 100 image (10,000 pixels, over twice the
    limit) is a decompression bomb, a 50 x 50 one (2,500) only earns PIL's warning; the fake
    RIVAL10 images (40 x 30) pass."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)


# ---------------------------------------------------------------- images


def test_decompression_bomb_is_one_line_naming_the_file(tmp_path, small_pixel_limit):
    bomb = _png(tmp_path / "bomb.png")
    for call in (lambda: load_image(bomb, 8), lambda: open_rgb(bomb), lambda: image_size(bomb)):
        with pytest.raises(SemheatError) as err:
            call()
        message = one_line(err)
        assert str(bomb) in message and "too large" in message and "10,000 pixels" in message


def test_decompression_bomb_warning_as_error_is_caught(tmp_path, small_pixel_limit):
    big = _png(tmp_path / "big.png", (50, 50))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(SemheatError) as err:
            load_image(big)
    assert str(big) in one_line(err) and "too large" in str(err.value)


def test_uploaded_bytes_and_masks_go_through_the_same_checks(tmp_path, small_pixel_limit):
    import base64

    data = _png(tmp_path / "up.png").read_bytes()
    with pytest.raises(SemheatError) as err:
        open_rgb(data, "the uploaded image")
    assert one_line(err).startswith("the uploaded image is too large")
    with pytest.raises(SemheatError) as err:
        open_rgb(b"not an image", "the uploaded image")
    assert one_line(err) == "cannot read the uploaded image: not a recognised image format"
    with pytest.raises(SemheatError) as err:
        decode_mask(base64.b64encode(data), "mask 'wet' in x.pkl")
    assert "mask 'wet' in x.pkl is too large" in one_line(err)
    small = io.BytesIO()
    Image.fromarray(np.eye(4, dtype=np.uint8) * 255).save(small, format="PNG")
    assert (decode_mask(base64.b64encode(small.getvalue())) == np.eye(4, dtype=bool)).all()


@needs_fifo
def test_fifo_image_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "image.png"
    os.mkfifo(fifo)
    with no_hang():
        for call in (lambda: load_image(fifo), lambda: open_rgb(fifo), lambda: image_size(fifo)):
            with pytest.raises(SemheatError) as err:
                call()
            assert str(fifo) in one_line(err) and "FIFO" in str(err.value)


def test_missing_and_truncated_images(tmp_path):
    with pytest.raises(SemheatError) as err:
        load_image(tmp_path / "nope.png")
    assert str(tmp_path / "nope.png") in one_line(err)
    good = _png(tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(SemheatError) as err:
        load_image(tmp_path / "cut.png")
    assert one_line(err).startswith(f"cannot read image {tmp_path / 'cut.png'}: ")


# ---------------------------------------------------------------- datasets skip them


@needs_fifo
def test_image_folder_skips_bombs_and_fifos(tmp_path, small_pixel_limit):
    for rel in ("cat/a.png", "cat/b.png", "dog/c.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        _png(tmp_path / rel, (8, 6))
    bomb = _png(tmp_path / "cat" / "bomb.png")
    os.mkfifo(tmp_path / "dog" / "fifo.png")
    csv_path = tmp_path / "attrs.csv"
    csv_path.write_text("path,furry\ncat/a.png,1\ncat/b.png,0\ncat/bomb.png,1\ndog/c.png,1\n"
                        "dog/fifo.png,0\n")
    with no_hang():
        with pytest.raises(SemheatError) as err:
            ImageFolderDataset(tmp_path, size=8, check_images=True)
        assert str(bomb) in one_line(err)
        with pytest.warns(UserWarning, match="skipped 2 unreadable images"):
            ds = ImageFolderDataset(tmp_path, size=8, attributes_csv=csv_path, on_error="skip",
                                    check_images=True)
    assert [p.relative_to(tmp_path).as_posix() for p in ds.paths] == [
        "cat/a.png", "cat/b.png", "dog/c.png"]
    assert ds.labels.tolist() == [0, 0, 1] and ds.classes == ("cat", "dog")
    assert ds.attributes[:, 0].tolist() == [True, False, True] and len(ds.skipped) == 2
    assert all("\n" not in m for m in ds.skipped)
    assert ds[2][0].shape == (3, 8, 8)
    # without the header check a bomb still fails when loaded, in one line, never crashes
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        lazy = ImageFolderDataset(tmp_path, size=8, on_error="skip")
    with pytest.raises(SemheatError) as err:
        lazy[lazy.paths.index(bomb)]
    assert str(bomb) in one_line(err)


@needs_fifo
def test_rival10_skips_bombs_and_fifos(tmp_path, small_pixel_limit):
    fake = make_fake_rival10(tmp_path / "data", n_per_class=1, malformed=False)
    folder = fake.root / "train" / "ordinary"
    victim = fake.entries["train"][0]
    Image.new("RGB", (100, 100)).save(victim.path, format="JPEG")  # now a bomb, sidecars fine
    fifo = folder / f"{victim.path.stem.split('_')[0]}_7777.JPEG"
    os.mkfifo(fifo)
    np.save(folder / f"{fifo.stem}_attr_labels.npy", np.zeros((2, 18), int))
    fifo_npy = fake.entries["train"][1].path
    fifo_npy = fifo_npy.with_name(fifo_npy.stem + "_attr_labels.npy")
    fifo_npy.unlink()
    os.mkfifo(fifo_npy)
    with no_hang():
        with pytest.warns(UserWarning, match="skipped 3 malformed"):
            ds = Rival10Dataset(fake.root, "train", size=16, on_error="skip", check_images=True)
        with pytest.raises(SemheatError) as err:
            Rival10Dataset(fake.root, "train", check_images=True)
    assert len(ds) == 8 and victim.path not in ds.paths and fifo not in ds.paths
    assert any(str(victim.path) in m and "too large" in m for m in ds.skipped)
    assert any(str(fifo) in m and "FIFO" in m for m in ds.skipped)
    assert any(str(fifo_npy) in m and "FIFO" in m for m in ds.skipped)
    assert "\n" not in one_line(err)
    assert ds[0][0].shape == (3, 16, 16)


def test_analysis_data_loading_skips_a_bomb(tmp_path, small_pixel_limit):
    from semheat_widgets.workflows.datasets import load_data

    fake = make_fake_rival10(tmp_path / "data", n_per_class=1, malformed=False)
    victim = fake.entries["test"][3].path
    Image.new("RGB", (100, 100)).save(victim, format="JPEG")
    with pytest.warns(UserWarning, match="skipped 1 malformed"):
        data = load_data(f"rival10:{fake.root}", size=16)
    assert len(data.train) == 10 and len(data.test) == 9 and victim not in data.test.paths


# ---------------------------------------------------------------- archives

GOOD = {"RIVAL10/train/ordinary/a.txt": b"a" * 100, "RIVAL10/test/ordinary/b.txt": b"b" * 100,
        "RIVAL10/meta/c.txt": b"c"}


def _zip(members, bad=None, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of the good members, then ``bad`` (a name or a ZipInfo, and its data) last, so
    that an extractor that checks as it goes would already have written the good ones."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        for name, data in members.items():
            zf.writestr(name, data)
        if bad is not None:
            zf.writestr(*bad)
    return buf.getvalue()


def _patch_last(data: bytes, local_at: int, central_at: int, fmt: str, value) -> bytes:
    """Set a field of the last member in both its local header and its central record."""
    out = bytearray(data)
    struct.pack_into(fmt, out, out.rfind(b"PK\x03\x04") + local_at, value)
    struct.pack_into(fmt, out, out.rfind(b"PK\x01\x02") + central_at, value)
    return bytes(out)


def _flags_last(data: bytes, bits: int) -> bytes:
    out = bytearray(data)
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = out.rfind(sig) + at
        struct.pack_into("<H", out, i, struct.unpack_from("<H", out, i)[0] | bits)
    return bytes(out)


def _symlink_info(name="RIVAL10/train/ordinary/link"):
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, "/etc/passwd"


def _assert_nothing_unpacked(dest: Path, archive: Path) -> None:
    assert find_root(dest) is None
    left = sorted(p.name for p in dest.iterdir()
                  if p != archive and not p.name.endswith((".lock", ".lock.json")))
    assert left == [], left


HOSTILE = {
    "encrypted": (lambda: _flags_last(_zip(GOOD, ("RIVAL10/test/ordinary/x", b"x" * 50)), 0x1),
                  "is encrypted"),
    "unsupported method": (lambda: _patch_last(_zip(GOOD, ("RIVAL10/test/ordinary/x", b"x")),
                                               8, 10, "<H", 99),
                           "compression method 99"),
    "file vs folder": (lambda: _zip(GOOD, ("RIVAL10/train/ordinary/a.txt/inner", b"x")),
                       "'RIVAL10/train/ordinary/a.txt' is a file, but"),
    "folder vs file": (lambda: _zip({"RIVAL10/x/": b"", **GOOD}, ("RIVAL10/x", b"x")),
                       "'RIVAL10/x' is a file, but 'RIVAL10/x/' needs a folder"),
    "duplicate": (lambda: _zip(GOOD, ("RIVAL10/meta/c.txt", b"other")), "appears twice"),
    "symlink": (lambda: _zip(GOOD, _symlink_info()), "symbolic link member"),
    "zip slip": (lambda: _zip(GOOD, ("RIVAL10/../../evil.txt", b"x")), "unsafe member path"),
    "bomb": (lambda: _zip(GOOD, ("RIVAL10/test/ordinary/zeros", bytes(300_000))),
             "unpacks to 300,201 bytes, over the limit of 200,000"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_archive_is_refused_and_leaves_nothing(tmp_path, kind):
    make, expected = HOSTILE[kind]
    archive = tmp_path / "dest" / "RIVAL10.zip"
    archive.parent.mkdir()
    archive.write_bytes(make())
    with pytest.raises(SemheatError) as err:
        safe_unzip(archive, archive.parent, max_bytes=200_000)
    assert expected in one_line(err) and str(archive) in str(err.value)
    _assert_nothing_unpacked(archive.parent, archive)
    assert not (tmp_path / "evil.txt").exists()


def test_member_whose_declared_size_lies_is_removed(tmp_path):
    data = _zip(GOOD, ("RIVAL10/test/ordinary/zeros", bytes(300_000)))
    data = _patch_last(data, 22, 24, "<I", 1000)  # claims 1000 bytes unpacked
    archive = tmp_path / "RIVAL10.zip"
    archive.write_bytes(data)
    with pytest.raises(SemheatError) as err:
        safe_unzip(archive, tmp_path)
    assert "zeros" in one_line(err)
    _assert_nothing_unpacked(tmp_path, archive)


def test_byte_limit_is_enforced_while_writing(tmp_path):
    """Even if the sizes checked up front were wrong, writing stops at the limit and the
    member being written is removed."""
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"big": bytes(3 * 2**20), "small": b"x"}))
    out = tmp_path / "out"
    out.mkdir()
    with zipfile.ZipFile(archive) as zf:
        plan = [(info, (info.filename,), False) for info in zf.infolist()]
        with pytest.raises(SemheatError) as err:
            download._extract(zf, plan, out, 2**20 + 5, archive)
    assert "limit of 1,048,581 bytes" in one_line(err)
    assert list(out.iterdir()) == []


def test_existing_file_where_a_folder_is_needed(tmp_path):
    archive = tmp_path / "RIVAL10.zip"
    archive.write_bytes(_zip(GOOD))
    (tmp_path / "RIVAL10").write_text("mine")
    with pytest.raises(SemheatError) as err:
        safe_unzip(archive, tmp_path)
    assert f"needs a folder at {tmp_path / 'RIVAL10'}" in one_line(err)
    assert (tmp_path / "RIVAL10").read_text() == "mine"
    (tmp_path / "RIVAL10").unlink()
    (tmp_path / "RIVAL10" / "meta" / "c.txt").mkdir(parents=True)
    with pytest.raises(SemheatError) as err:
        safe_unzip(archive, tmp_path)
    assert "would replace" in one_line(err) and find_root(tmp_path) is None


def test_good_archive_merges_into_dest_and_leaves_no_temporary(tmp_path):
    archive = tmp_path / "RIVAL10.zip"
    archive.write_bytes(_zip(GOOD))
    (tmp_path / "RIVAL10" / "meta").mkdir(parents=True)
    (tmp_path / "RIVAL10" / "meta" / "mine.txt").write_text("kept")
    stale = tmp_path / ".RIVAL10.tmp-deadbeef"  # left by a run that was killed
    stale.mkdir()
    (stale / TEMP_MARKER).touch()
    safe_unzip(archive, tmp_path)
    assert find_root(tmp_path) == tmp_path / "RIVAL10"
    for name, data in GOOD.items():
        assert (tmp_path / name).read_bytes() == data
    assert (tmp_path / "RIVAL10" / "meta" / "mine.txt").read_text() == "kept"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_half_unpacked_temporary_is_never_taken_for_the_dataset(tmp_path, monkeypatch):
    stale = tmp_path / ".RIVAL10.tmp-deadbeef"  # a run killed while unpacking
    for split in ("train", "test"):
        (stale / "RIVAL10" / split / "ordinary").mkdir(parents=True)
    (stale / TEMP_MARKER).touch()
    assert find_root(tmp_path) is None
    seen, real = [], download._extract

    def watched(zf, plan, tmp, *rest):  # what a concurrent reader sees before and after
        seen.append(find_root(tmp_path))
        real(zf, plan, tmp, *rest)
        seen.append(find_root(tmp_path))

    monkeypatch.setattr(download, "_extract", watched)
    (tmp_path / "RIVAL10.zip").write_bytes(_zip(GOOD))
    safe_unzip(tmp_path / "RIVAL10.zip", tmp_path)
    assert seen == [None, None] and find_root(tmp_path) == tmp_path / "RIVAL10"
    assert not stale.exists()


def test_limit_from_download_argument_and_environment(tmp_path, monkeypatch):
    source = tmp_path / "src.zip"
    source.write_bytes(_zip(GOOD))
    url = source.as_uri()
    with pytest.raises(SemheatError) as err:
        download_rival10(tmp_path / "a", accept_license=True, url=url, progress=False,
                         max_bytes=150)
    assert "over the limit of 150" in one_line(err)
    _assert_nothing_unpacked(tmp_path / "a", tmp_path / "a" / "RIVAL10.zip")
    monkeypatch.setenv(MAX_UNZIP_ENV, "150")
    with pytest.raises(SemheatError) as err:
        download_rival10(tmp_path / "b", accept_license=True, url=url, progress=False)
    assert "over the limit of 150" in one_line(err)
    monkeypatch.setenv(MAX_UNZIP_ENV, "lots")
    with pytest.raises(SemheatError) as err:
        download_rival10(tmp_path / "c", accept_license=True, url=url, progress=False)
    assert MAX_UNZIP_ENV in one_line(err) and not (tmp_path / "c").exists()
    monkeypatch.setenv(MAX_UNZIP_ENV, "1000")
    root = download_rival10(tmp_path / "d", accept_license=True, url=url, progress=False)
    assert root == tmp_path / "d" / "RIVAL10"


@pytest.mark.parametrize("url, expected", [
    ("example.com/x.zip", "has no scheme"),
    ("ftp://example.com/x.zip", "uses 'ftp'"),
    ("http:///x.zip", "names no host"),
])
def test_bad_url_is_refused_before_any_network_access(tmp_path, monkeypatch, url, expected):
    def no_network(*_a, **_k):
        raise AssertionError("network accessed")

    monkeypatch.setattr(download.urllib.request, "urlopen", no_network)
    with pytest.raises(SemheatError) as err:
        download_rival10(tmp_path / "d", accept_license=True, url=url)
    assert expected in one_line(err) and repr(url) in str(err.value)
    assert not (tmp_path / "d").exists()
