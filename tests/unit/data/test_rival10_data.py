"""The RIVAL10 data layer on a fake tree: loader, safe masks, image folders, download, prompts."""

from __future__ import annotations

import io
import os
import pickle
import re
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from helpers.fake_rival10 import make_fake_rival10
from PIL import Image

from semheat_widgets.data.download import URL_ENV, download_rival10, safe_unzip
from semheat_widgets.data.folder import ImageFolderDataset
from semheat_widgets.data.names import RIVAL10_ATTRIBUTES, RIVAL10_CLASSES
from semheat_widgets.data.rival10 import Rival10Dataset
from semheat_widgets.data.rival10_prompts import RIVAL10_CLASS_PROMPTS, RIVAL10_PROMPTS
from semheat_widgets.workflows.datasets import rival10_concepts
from semheat_widgets.data.safe_pickle import loads_str_dict
from semheat_widgets.errors import SemheatError


@pytest.fixture
def fake(tmp_path):
    return make_fake_rival10(tmp_path / "data")


# ---------------------------------------------------------------- RIVAL10 loader


def test_reads_labels_and_attributes(fake):
    expected = fake.entries["test"]
    for root in (fake.root, fake.root.parent):
        ds = Rival10Dataset(root, "test", size=16)
        assert ds.paths == [e.path for e in expected]
        assert ds.labels.dtype == np.int64
        assert ds.labels.tolist() == [e.label for e in expected]
        assert ds.attributes.dtype == bool and ds.attributes.shape == (len(expected), 18)
        assert (ds.attributes == np.stack([e.attributes for e in expected])).all()
        assert (ds.changed == np.stack([e.changed for e in expected])).all()
        assert ds.classes == RIVAL10_CLASSES and ds.attribute_names == RIVAL10_ATTRIBUTES
    assert set(ds.labels.tolist()) == set(range(10)) and len(ds) == 20


def test_grayscale_images_come_out_rgb(fake):
    ds = Rival10Dataset(fake.root, "test", size=16)
    grey = [i for i, e in enumerate(fake.entries["test"]) if e.grayscale]
    assert grey
    for i in grey:
        image, label = ds[i]
        assert image.shape == (3, 16, 16) and str(image.dtype) == "torch.uint8"
        assert (image[0] == image[1]).all() and (image[1] == image[2]).all()
        assert label == fake.entries["test"][i].label


def test_masks_decode_and_align(fake):
    ds = Rival10Dataset(fake.root, "test", size=30, masks=True)  # 40x30 images: crop 5 px a side
    for i, entry in enumerate(fake.entries["test"][:4]):
        raw = ds.masks(i, aligned=False)
        present = {a for a, f in zip(RIVAL10_ATTRIBUTES, entry.attributes, strict=True) if f}
        assert set(raw) == present | {"entire-object"}
        left, top, right, bottom = entry.mask_box
        want = np.zeros((30, 40), bool)
        want[top:bottom, left:right] = True
        assert all(m.dtype == bool and (m == want).all() for m in raw.values())
        aligned = ds.masks(i)
        assert all((m == want[:, 5:35]).all() for m in aligned.values())


def _evil_pickle(marker) -> bytes:
    class Evil:
        def __reduce__(self):
            return os.system, (f"touch '{marker}'",)

    return pickle.dumps({"wings": Evil()})


def test_restricted_unpickler_refuses_code(fake, tmp_path):
    marker = tmp_path / "pwned"
    payload = _evil_pickle(marker)
    with pytest.raises(SemheatError, match="refused to load global"):
        loads_str_dict(payload)
    ds = Rival10Dataset(fake.root, "test", size=16)
    (ds.paths[0].with_name(ds.paths[0].stem + "_attr_dict.pkl")).write_bytes(payload)
    with pytest.raises(SemheatError, match="_attr_dict.pkl"):
        ds.masks(0)
    assert not marker.exists()
    # control: the payload is real, a plain unpickler would have run it
    pickle.loads(payload)
    assert marker.exists()


def test_restricted_unpickler_accepts_plain_dicts_only():
    for protocol in (0, 2, 5):
        assert loads_str_dict(pickle.dumps({"a": "eA=="}, protocol=protocol)) == {"a": "eA=="}
    assert loads_str_dict(pickle.dumps({"a": b"x"}, protocol=4)) == {"a": b"x"}
    with pytest.raises(SemheatError, match="expected str -> str or bytes"):
        loads_str_dict(pickle.dumps({"a": 1}))
    with pytest.raises(SemheatError, match="holds a list"):
        loads_str_dict(pickle.dumps(["a"]))
    with pytest.raises(SemheatError, match="invalid pickle"):
        loads_str_dict(b"\x80\x04garbage")


def test_wrong_root(tmp_path):
    with pytest.raises(SemheatError, match=r"not a RIVAL10 folder: expected .*train/ordinary"):
        Rival10Dataset(tmp_path, "train")


def test_missing_sibling_names_the_file(fake):
    with pytest.raises(SemheatError, match=r"missing attribute labels .*n03796401_9001_attr_lab"):
        Rival10Dataset(fake.root, "train")


def test_unknown_wnid_names_file_and_wnid(fake):
    fake.bad["missing_npy"].unlink()
    with pytest.raises(SemheatError, match=r"n99999999_9002\.JPEG: unknown ImageNet wnid 'n99"):
        Rival10Dataset(fake.root, "train")


def test_bad_attr_label_shape(fake):
    entry = fake.entries["test"][3]
    np.save(entry.path.with_name(entry.path.stem + "_attr_labels.npy"), np.zeros((3, 5)))
    with pytest.raises(SemheatError, match=r"shape \(3, 5\), expected \(2, 18\)"):
        Rival10Dataset(fake.root, "test")


def test_corrupt_image_names_the_path(fake):
    with pytest.warns(UserWarning, match="skipped 2 malformed"):
        ds = Rival10Dataset(fake.root, "train", size=16, on_error="skip")
    i = ds.paths.index(fake.bad["corrupt"])
    with pytest.raises(SemheatError, match=re.escape(str(fake.bad["corrupt"]))):
        ds[i]
    with pytest.raises(SemheatError, match="cannot read image .*n02123394_9003.JPEG"):
        Rival10Dataset(fake.root, "train", check_images=True)


def test_skip_mode_keeps_the_good_entries(fake):
    with pytest.warns(UserWarning, match="skipped 3 malformed"):
        ds = Rival10Dataset(fake.root, "train", size=16, on_error="skip", check_images=True)
    expected = fake.entries["train"]
    assert ds.paths == [e.path for e in expected] and len(ds.skipped) == 3
    assert ds.labels.tolist() == [e.label for e in expected]
    assert (ds.attributes == np.stack([e.attributes for e in expected])).all()
    assert ds[0][0].shape == (3, 16, 16)


def test_masks_flag_requires_the_pickles(fake):
    entry = fake.entries["test"][0]
    entry.path.with_name(entry.path.stem + "_attr_dict.pkl").unlink()
    assert len(Rival10Dataset(fake.root, "test")) == 20
    with pytest.raises(SemheatError, match="missing attribute masks .*_attr_dict.pkl"):
        Rival10Dataset(fake.root, "test", masks=True)


def test_bad_arguments(fake):
    with pytest.raises(SemheatError, match="split"):
        Rival10Dataset(fake.root, "val")
    with pytest.raises(SemheatError, match="on_error"):
        Rival10Dataset(fake.root, "test", on_error="ignore")


# ---------------------------------------------------------------- image folders


def _image_tree(root):
    files = {"cat/a.png": (10, 20), "cat/b.jpg": (30, 10), "dog/sub/c.png": (12, 12),
             ".hidden/d.png": (8, 8)}
    for rel, wh in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L" if rel.endswith("b.jpg") else "RGB", wh, 90).save(root / rel)
    (root / "empty").mkdir()
    (root / "cat" / "notes.txt").write_text("not an image")
    return ["cat/a.png", "cat/b.jpg", "dog/sub/c.png"]


def test_image_folder_without_csv(tmp_path):
    rels = _image_tree(tmp_path)
    ds = ImageFolderDataset(tmp_path, size=8)
    assert ds.classes == ("cat", "dog") and ds.labels.tolist() == [0, 0, 1]
    assert [p.relative_to(tmp_path).as_posix() for p in ds.paths] == rels
    assert ds.attributes is None and ds.attribute_names == ()
    image, label = ds[1]
    assert image.shape == (3, 8, 8) and label == 0


def test_image_folder_with_csv(tmp_path):
    _image_tree(tmp_path / "t")
    csv_path = tmp_path / "attrs.csv"
    csv_path.write_text("path,furry,wet\ndog/sub/c.png,1,0\ncat/a.png,0,1\ncat/b.jpg,1,1\n")
    ds = ImageFolderDataset(tmp_path / "t", attributes_csv=csv_path)
    assert ds.attribute_names == ("furry", "wet")
    assert ds.attributes.tolist() == [[False, True], [True, True], [True, False]]


@pytest.mark.parametrize("text, message", [
    ("path,wet\ncat/a.png,1\ncat/zzz.png,0\n", r"line 3: 'cat/zzz.png' is not an image"),
    ("path,wet\ncat/a.png,1\ncat/b.jpg,yes\ndog/sub/c.png,0\n", "wet must be 0 or 1, got 'yes'"),
    ("path,wet\ncat/a.png,1\ncat/b.jpg,0\n", r"no row for 1 image\(s\), e.g. 'dog/sub/c.png'"),
    ("file,wet\ncat/a.png,1\n", "needs a 'path' column"),
])
def test_image_folder_csv_errors(tmp_path, text, message):
    _image_tree(tmp_path / "t")
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(SemheatError, match=message):
        ImageFolderDataset(tmp_path / "t", attributes_csv=tmp_path / "a.csv")


def test_image_folder_empty_or_missing(tmp_path):
    (tmp_path / "cls").mkdir()
    with pytest.raises(SemheatError, match="no images found"):
        ImageFolderDataset(tmp_path)
    with pytest.raises(SemheatError, match="not found"):
        ImageFolderDataset(tmp_path / "nope")
    _image_tree(tmp_path / "t")
    with pytest.raises(SemheatError, match="attributes CSV not found"):
        ImageFolderDataset(tmp_path / "t", attributes_csv=tmp_path / "missing.csv")


# ---------------------------------------------------------------- download


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.payload``; honours ``Range: bytes=N-``; may cut the body short."""

    def do_GET(self):
        data, rng = self.server.payload, self.headers.get("Range")
        self.server.ranges.append(rng)
        start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)) if rng else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        self.wfile.write(body[: self.server.cut] if self.server.cut else body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    base = tmp_path_factory.mktemp("zip")
    make_fake_rival10(base, n_per_class=1, malformed=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted((base / "RIVAL10").rglob("*")):
            zf.write(path, path.relative_to(base).as_posix())
    return buf.getvalue()


@pytest.fixture
def server(archive):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.payload, httpd.ranges, httpd.cut = archive, [], 0
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/RIVAL10.zip"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/RIVAL10.zip"


def test_download_needs_license(tmp_path):
    with pytest.raises(SemheatError, match="non-commercial research only.*accept_license=True"):
        download_rival10(tmp_path / "d", url="http://127.0.0.1:9/x.zip")
    assert not (tmp_path / "d").exists()


def test_download_needs_a_url(tmp_path, monkeypatch):
    import semheat_widgets.data.download as download

    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.setattr(download, "DEFAULT_URL", "")
    with pytest.raises(SemheatError, match=f"no RIVAL10 download URL: set {URL_ENV}"):
        download_rival10(tmp_path, accept_license=True)


def test_download_resumes_from_partial_file(tmp_path, server, archive, monkeypatch):
    monkeypatch.setenv(URL_ENV, server.url)
    (tmp_path / "RIVAL10.zip.part").write_bytes(archive[:1000])
    root = download_rival10(tmp_path, accept_license=True, progress=False,
                            expected_size=len(archive))
    assert server.ranges == ["bytes=1000-"]
    assert (tmp_path / "RIVAL10.zip").read_bytes() == archive
    assert not (tmp_path / "RIVAL10.zip.part").exists()
    assert root == tmp_path / "RIVAL10" and len(Rival10Dataset(root, "test")) == 10
    # already unpacked: returned without touching the network
    assert download_rival10(tmp_path, accept_license=True, url=_closed_port_url()) == root


def test_download_detects_short_body_then_resumes(tmp_path, server, archive):
    server.cut = 700
    with pytest.raises(SemheatError, match=f"got 700 of {len(archive)} bytes; run again"):
        download_rival10(tmp_path, accept_license=True, url=server.url, progress=False)
    assert (tmp_path / "RIVAL10.zip.part").stat().st_size == 700
    server.cut = 0
    download_rival10(tmp_path, accept_license=True, url=server.url, progress=False)
    assert server.ranges == [None, "bytes=700-"]
    assert (tmp_path / "RIVAL10.zip").read_bytes() == archive


def test_download_size_mismatch(tmp_path, server, archive):
    with pytest.raises(SemheatError, match=f"downloaded {len(archive)} bytes, expected 5"):
        download_rival10(tmp_path, accept_license=True, url=server.url, progress=False,
                         expected_size=5)
    assert not (tmp_path / "RIVAL10.zip.part").exists()
    assert not (tmp_path / "RIVAL10.zip").exists()


def test_zip_slip_refused(tmp_path, server):
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("RIVAL10/train/ordinary/ok.txt", "fine")
        zf.writestr("../escaped.txt", "bad")
    server.payload = evil.getvalue()
    dest = tmp_path / "dest"
    with pytest.raises(SemheatError, match="refusing unsafe member path '../escaped.txt'"):
        download_rival10(dest, accept_license=True, url=server.url, progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (dest / "RIVAL10").exists()
    absolute = tmp_path / "abs.zip"
    with zipfile.ZipFile(absolute, "w") as zf:
        zf.writestr("/etc/evil.txt", "bad")
    with pytest.raises(SemheatError, match="unsafe member path"):
        safe_unzip(absolute, dest)


def test_offline_fails_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(SemheatError, match=r"network unreachable.*unzip it so that .*RIVAL10/"):
        download_rival10(tmp_path, accept_license=True, url=_closed_port_url(), timeout=2)
    assert time.monotonic() - start < 15  # the 2 s timeout, not a hang
    assert not (tmp_path / "RIVAL10.zip").exists()


def test_bad_archive_is_reported(tmp_path, server):
    server.payload = b"not a zip at all"
    with pytest.raises(SemheatError, match="not a valid zip file"):
        download_rival10(tmp_path, accept_license=True, url=server.url, progress=False)


# ---------------------------------------------------------------- prompts


def test_prompts_cover_every_attribute_and_class():
    assert tuple(RIVAL10_PROMPTS) == RIVAL10_ATTRIBUTES
    assert all(3 <= len(set(p)) == len(p) <= 5 for p in RIVAL10_PROMPTS.values())
    assert tuple(RIVAL10_CLASS_PROMPTS) == RIVAL10_CLASSES
    assert all(len(p) >= 2 for p in RIVAL10_CLASS_PROMPTS.values())
    bank = rival10_concepts()
    assert bank.names == list(RIVAL10_ATTRIBUTES)
    assert bank["wet"].prompts == tuple(RIVAL10_PROMPTS["wet"])
