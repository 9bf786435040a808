"""Ray against a real cluster: a head node and a second worker node, each its own set of Ray
processes (``ray start``) on this machine; ``semheat analyze --engine ray`` connects to the head
as any user's job would. The worker node is killed mid-run: every input must still come back
exactly once, and the bundle must equal the one the local engine builds."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

from helpers.fake_rival10 import make_fake_rival10  # noqa: E402
from semheat_widgets.engine.bundle import Bundle  # noqa: E402

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))
SHARD = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path) -> dict:
    # token authentication off: the cluster lives and dies inside this test, on loopback
    return dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
                TQDM_DISABLE="1", RAY_TMPDIR=str(tmp))


@pytest.fixture
def ray_tmp():
    """Ray's session folder: a short path (its sockets must fit in 107 bytes)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="sr-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cluster(ray_tmp):
    """``(head address, worker node process)``: the head with 4 CPUs (room for a replica that
    moves over when the worker dies), the worker node with 2, held by ``ray start --block``
    in its own process group so that killing the group takes the whole node down."""
    env = _env(ray_tmp)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = subprocess.run([RAY, "start", "--head", f"--port={port}", "--num-cpus=4",
                           "--include-dashboard=false", "--disable-usage-stats"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert head.returncode == 0, head.stdout + head.stderr
    worker = subprocess.Popen([RAY, "start", f"--address={address}", "--num-cpus=2",
                               "--block"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_nodes(address, env, 2)
        yield address, worker
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


def _wait_for_nodes(address: str, env: dict, n: int, timeout: float = 90) -> None:
    code = ("import ray; ray.init(address=%r, log_to_driver=False); "
            "print(sum(x['Alive'] for x in ray.nodes()))" % address)
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=120)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1] == str(n):
            return
        time.sleep(2)
    raise AssertionError(f"the cluster never had {n} live nodes")


def _checkpoint(path: Path) -> Path:
    import torch
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(0)
    save_file(resnet18(num_classes=10).state_dict(), str(path))
    return path


def _analyze(data: str, out: Path, env: dict, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "semheat_widgets.cli", "analyze", "--data", data,
            "--vlm", "toy", "--out", str(out), "--attack-limit", "8", "--batch-size", "8",
            "--workers", "0", "--quiet", *extra]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_a_worker_node_killed_mid_run_loses_and_duplicates_nothing(cluster, ray_tmp, tmp_path):
    address, worker = cluster
    env = _env(ray_tmp)
    fake = make_fake_rival10(tmp_path / "rival", n_per_class=10, malformed=False)
    data = f"rival10:{fake.root}"
    ckpt = _checkpoint(tmp_path / "resnet18.safetensors")  # both runs: the same weights

    started = time.perf_counter()
    run = _analyze(data, tmp_path / "on_ray", env, "--engine", "ray", "--ray-address", address,
                   "--ray-actors", "2", "--ray-shard-size", str(SHARD),
                   "--classifier", f"resnet18:{ckpt}")
    shards = tmp_path / "on_ray.work" / "ray"
    while run.poll() is None and not list(shards.glob("*/shard-*.parquet")):
        assert time.perf_counter() - started < 600, "no shard finished in 10 minutes"
        time.sleep(0.2)
    done_at_kill = len(list(shards.glob("*/shard-*.parquet")))
    assert run.poll() is None, "the run ended before the worker node could be killed"
    os.killpg(worker.pid, signal.SIGKILL)  # the whole worker node, at once
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output[-3000:]

    local = _analyze(data, tmp_path / "local", env, "--classifier", f"resnet18:{ckpt}")
    local_out, _ = local.communicate(timeout=900)
    assert local.returncode == 0, local_out[-3000:]

    a, b = Bundle.load(tmp_path / "on_ray"), Bundle.load(tmp_path / "local")
    natural = a.mask(perturbation="natural")
    n = int(natural.sum())
    total_shards = sum(1 for _ in shards.glob("*/shard-*.parquet"))
    assert done_at_kill < total_shards  # killed mid-run, with shards still to come
    # every input exactly once, in order, with the same records as the local engine
    assert sorted(a.column("source_id")[natural].tolist()) == list(range(n))
    assert a.n == b.n and np.array_equal(a.column("label"), b.column("label"))
    assert np.array_equal(a.column("prediction"), b.column("prediction"))
    for key in ("features", "logits", "image_emb"):
        np.testing.assert_allclose(np.asarray(a.arrays[key]), np.asarray(b.arrays[key]),
                                   atol=1e-4)
    assert np.array_equal(np.asarray(a.arrays["thumbs"]), np.asarray(b.arrays["thumbs"]))
    assert np.array_equal(a.column("fault"), b.column("fault"))
