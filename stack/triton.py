"""The embedded Triton Inference Server: the ``tritonserver`` binary bundled in ``nvidia-pytriton``, on CPU.

Contract:
- ``ensure_serving_venv`` builds, once, the separate serving venv the python backend runs models in (numpy<2,
  torch, transformers: ``stack/serving-requirements.txt``). It lives in a cache directory keyed by the hash of
  that file, so clones and test runs on one machine share it; a changed file builds a new one. A file lock makes
  concurrent callers wait instead of racing; a stamp written last marks it complete.
- ``start`` runs tritonserver on the model repository (``triton_models/`` by default) with explicit model
  control, loading every model that has a version directory, bound to the loopback address, with the
  environment platform.md prescribes (serving venv first on PATH, its libpython on LD_LIBRARY_PATH), with numpy's
  OpenBLAS on one thread (``OPENBLAS_NUM_THREADS``; the judge's numpy work is small).
- ``load_model``/``unload_model`` (re)load or unload one model of a running server (explicit model control).
- ``healthy`` is ``GET /v2/health/ready``. Production runs the NVIDIA Triton image on a GPU node with the same
  model repository (``infra/compose``, ``infra/k8s``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

from schemas import paths
from schemas.settings import Settings
from stack import process

REQUIREMENTS = Path(__file__).resolve().parent / "serving-requirements.txt"
DEFAULT_MODEL_REPOSITORY = paths.TRITON_MODELS
CACHE_DIR = paths.CACHE_DIR
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def serving_venv_path(settings: Settings) -> Path:
    if settings.stack.serving_venv:
        return settings.stack.serving_venv.expanduser().resolve()
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + PY.encode()).hexdigest()[:12]
    return CACHE_DIR / f"serving-venv-{digest}"


def _site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{PY}" / "site-packages"


def tritonserver_dir(venv: Path) -> Path:
    return _site_packages(venv) / "pytriton" / "tritonserver"


def ensure_serving_venv(settings: Settings, log=print) -> Path:
    venv = serving_venv_path(settings)
    stamp = venv / ".judgeline-complete"
    if stamp.exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(str(venv) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():  # built by another process while we waited
            return venv
        log(f"building the Triton serving venv at {venv} (once; a few minutes)")
        if venv.exists():
            shutil.rmtree(venv)
        base_python = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
        pip_log = Path(str(venv) + ".pip.log")
        with open(pip_log, "wb") as out:
            done = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-r", str(REQUIREMENTS)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if done.returncode != 0:
            tail = "\n".join(pip_log.read_text(errors="replace").splitlines()[-20:])
            raise OSError(f"installing the Triton serving venv failed (log {pip_log}):\n{tail}")
        server = tritonserver_dir(venv)
        stub = server / "python_backend_stubs" / PY / "triton_python_backend_stub"
        shutil.copy2(stub, server / "backends" / "python" / "triton_python_backend_stub")
        stamp.write_text(REQUIREMENTS.read_text())
    return venv


def model_repository(settings: Settings) -> Path:
    return (settings.stack.model_repository or DEFAULT_MODEL_REPOSITORY).expanduser().resolve()


def loadable_models(repository: Path) -> list[str]:
    """Models with a config.pbtxt and at least one numeric version directory."""
    if not repository.is_dir():
        return []
    return sorted(
        m.name
        for m in repository.iterdir()
        if (m / "config.pbtxt").exists() and any(v.is_dir() and v.name.isdigit() for v in m.iterdir())
    )


def start(settings: Settings) -> process.ServiceRecord:
    venv = ensure_serving_venv(settings)
    host = settings.stack.bind_host
    ports = {
        "http": settings.stack.triton_http_port or process.free_port(host),
        "grpc": settings.stack.triton_grpc_port or process.free_port(host),
        "metrics": settings.stack.triton_metrics_port or process.free_port(host),
    }
    server = tritonserver_dir(venv)
    repository = model_repository(settings)
    repository.mkdir(parents=True, exist_ok=True)
    command = [
        str(server / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={server / 'backends'}",
        f"--http-address={host}",
        f"--http-port={ports['http']}",
        f"--grpc-address={host}",
        f"--grpc-port={ports['grpc']}",
        f"--metrics-address={host}",
        f"--metrics-port={ports['metrics']}",
        "--allow-gpu-metrics=false",
        "--pinned-memory-pool-byte-size=0",
        "--exit-on-error=true",
        "--model-control-mode=explicit",
        *[f"--load-model={m}" for m in loadable_models(repository)],
    ]
    libdir = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip() or sysconfig.get_config_var("LIBDIR")
    env = {
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        "LD_LIBRARY_PATH": ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        # numpy's OpenBLAS (the serving venv's numpy<2 wheel) starts a thread per core for the judge's tiny matrix
        # products, which then competes with torch's and ONNX Runtime's: one thread is enough for them (issue 13)
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),
    }
    return process.start(
        "triton", command, settings.state_dir, env=env, ports=ports, extra={"model_repository": str(repository)}
    )


def healthy(settings: Settings, record: process.ServiceRecord) -> bool:
    url = f"http://{settings.stack.bind_host}:{record.ports['http']}/v2/health/ready"
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200


def loaded_models(settings: Settings, record: process.ServiceRecord) -> list[dict]:
    """The repository index: each model's name, version and state (READY, UNAVAILABLE...)."""
    import json

    req = urllib.request.Request(
        f"http://{settings.stack.bind_host}:{record.ports['http']}/v2/repository/index", data=b"{}", method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def load_model(settings: Settings, name: str, timeout_s: float = 120.0) -> str:
    """(Re)load ``name`` through the repository API and return the version now serving.

    Triton loads the new version beside the old one and switches only when it is ready, so requests in flight
    and arriving meanwhile are answered (explicit model control; the version policy serves the latest one).
    """
    import time

    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(settings.triton.http_url, network_timeout=timeout_s,
                                              connection_timeout=10.0)
    try:
        client.load_model(name)
        deadline = time.monotonic() + timeout_s
        while not client.is_model_ready(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not become ready within {timeout_s} s")
            time.sleep(0.2)
        return str(max(int(v) for v in client.get_model_metadata(name)["versions"]))
    finally:
        client.close()


def unload_model(settings: Settings, name: str, timeout_s: float = 60.0) -> None:
    """Unload ``name`` through the repository API (requests in flight finish first); unloading a model that is not
    loaded is not an error."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(settings.triton.http_url, network_timeout=timeout_s,
                                              connection_timeout=10.0)
    try:
        client.unload_model(name)
    finally:
        client.close()
