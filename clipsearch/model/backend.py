"""Which engine runs the image tower when indexing, and in which precision.

Measured on this project's 2-vCPU machines (ViT-B-32-256, two threads): on one, onnxruntime
fp32 15.7-15.9 img/s, torch fp32 14.2, torch bf16 11.6 (the CPU advertises avx512_bf16 and
amx_bf16, yet torch runs bf16 slower), onnxruntime int8 dynamic quantisation 30.8; on another
(an AMD EPYC with avx512_bf16), onnxruntime fp32 18.3, torch bf16 30.1, torch fp32 14.8.  So
nothing is hard-coded: on a CPU, onnxruntime over the library's image export is the default;
torch is measured against it where the CPU advertises bf16, once per machine and model (when
torch is loaded anyway to write the export), and the choice is kept in the user cache.  A
lower precision is chosen only where its fidelity is shown (see `fidelity`): bf16 on spread
weights measured cosine 0.9956 to fp32 (`bench index --precision bf16`), under the 0.999 bound,
so today it runs on request.  On a GPU the torch fp16 path stays.  `--backend` and
`--precision` override the choice.

Nothing here imports torch: a GPU is detected from the driver's files, so an index run on a
CPU with a cached export never loads torch at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ClipsearchError
from ..fsutil import read_json_table, write_json_table

AUTO, TORCH, ORT = "auto", "torch", "onnxruntime"
BACKENDS = (AUTO, TORCH, ORT)
FP32, BF16, FP16, INT8 = "fp32", "bf16", "fp16", "int8"
PRECISIONS = (AUTO, FP32, BF16, FP16, INT8)
_ORT_PRECISIONS = (FP32, INT8)
_TORCH_CPU_PRECISIONS = (FP32, BF16)
MIN_COSINE = 0.999  # a precision below this against fp32 is not chosen automatically
# Reference vectors whose mean pairwise cosine is above this prove nothing about fidelity:
# plain random weights put every input within ~0.99 of every other, and there bf16 passed 0.999
# although on spread weights it measured 0.9956.
SPREAD_COSINE = 0.5


@dataclass(frozen=True)
class Choice:
    """What runs the index tower, and why (shown by `bench index` and `status`)."""

    backend: str
    precision: str
    reason: str

    def label(self) -> str:
        return f"{self.backend} {self.precision}"

    def as_dict(self) -> dict:
        return asdict(self)


def check_request(backend: str, precision: str) -> None:
    """Refuse unknown names and pairs no engine here runs, with the way out."""
    if backend not in BACKENDS:
        raise ClipsearchError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ClipsearchError(
            f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}"
        )
    if backend == ORT and precision not in (AUTO, *_ORT_PRECISIONS):
        raise ClipsearchError(
            f"onnxruntime runs fp32 or int8, not {precision}: use --backend torch for {precision}"
        )
    if backend == TORCH and precision == INT8:
        raise ClipsearchError("int8 runs in onnxruntime: use --backend onnxruntime or auto")


def gpu_present() -> bool:
    """Whether a GPU torch could use may be here, judged without importing torch: an NVIDIA
    driver's files on Linux, Apple silicon on macOS.  A false yes only costs importing torch."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:  # a platform without its wheels
        return False
    return True


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux); empty elsewhere, which means 'measure nothing'."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def advertises_bf16(flags: frozenset[str]) -> bool:
    """bf16 instructions the CPU claims; whether torch runs them fast is then measured."""
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def wants_gpu(device: str) -> bool:
    """True when the index must run in torch on an accelerator (the fp16 path)."""
    if device in ("cuda", "mps"):
        return True
    return device == "auto" and gpu_present()


def choose(
    device: str,
    backend: str,
    precision: str,
    *,
    export_ok: bool,
    measured: Choice | None,
) -> Choice:
    """The backend for an index run.

    `export_ok`: the image export exists and onnxruntime can open it; `measured`: the choice a
    measurement on this machine and model recorded, if any.  Falls back to torch, saying why,
    whenever onnxruntime cannot run.
    """
    check_request(backend, precision)
    if backend != ORT and precision != INT8 and wants_gpu(device):
        return Choice(TORCH, FP16 if precision in (AUTO, FP16) else precision, "GPU present")
    if backend == TORCH:
        return Choice(TORCH, FP32 if precision == AUTO else precision, "asked for")
    if precision in (BF16, FP16):
        return Choice(TORCH, precision, f"{precision} runs in torch")
    if not onnxruntime_available():
        return _torch_fallback(backend, "onnxruntime is not installed")
    if not export_ok:
        return _torch_fallback(backend, "no usable image export yet")
    if precision != AUTO or backend == ORT:
        return Choice(ORT, FP32 if precision == AUTO else precision, "asked for")
    if measured is not None:
        return measured
    return Choice(ORT, FP32, "default on a CPU")


def _torch_fallback(backend: str, why: str) -> Choice:
    if backend == ORT:
        raise ClipsearchError(f"cannot index with onnxruntime: {why}; use --backend auto")
    return Choice(TORCH, FP32, why)


# --- the measured choice, kept per machine and model -----------------------------------------


def machine_key() -> str:
    """CPU model, core count and engine versions: a new CPU or engine is measured afresh."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), "")
    except OSError:
        pass
    versions = []
    for module in ("onnxruntime", "torch"):
        try:
            from importlib.metadata import version

            versions.append(version(module))
        except Exception:  # not installed
            versions.append("-")
    text = "|".join([name or platform.processor(), str(os.cpu_count()), *versions])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recorded_choice(path: Path, model_key: str) -> Choice | None:
    """The choice measured earlier for this machine and model, if any."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))[f"{machine_key()}/{model_key}"]
        return Choice(entry["backend"], entry["precision"], entry["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_choice(path: Path, model_key: str, choice: Choice) -> None:
    """Keep a measured choice; a cache that cannot be written only means measuring again."""
    table = read_json_table(path)
    table[f"{machine_key()}/{model_key}"] = choice.as_dict()
    write_json_table(path, table)


def pick_measured(rates: dict[str, float], cosines: dict[str, float]) -> Choice:
    """From img/s and cosine-to-fp32 per candidate ('onnxruntime fp32', 'torch bf16', ...),
    the fastest faithful one."""
    faithful = {k: r for k, r in rates.items() if cosines.get(k, 0.0) >= MIN_COSINE}
    best = max(faithful, key=faithful.__getitem__)
    backend, precision = best.split()
    figures = ", ".join(f"{k} {rates[k]:.1f} img/s" for k in sorted(rates))
    return Choice(backend, precision, f"measured here: {figures}")


def fidelity_figures(reference, output) -> tuple[float, bool, float | None]:
    """(the least cosine of an output row to its reference row, whether every row is nearest
    its own reference, the references' mean pairwise cosine: None for a single row).  Rows
    are unit vectors; `bench index` reports these three as they are."""
    import numpy as np

    similarity = output @ reference.T
    count = len(reference)
    others = (reference @ reference.T)[~np.eye(count, dtype=bool)]
    spread = float(others.mean()) if len(others) else None
    nearest = bool(np.array_equal(similarity.argmax(1), np.arange(count)))
    return float(np.diag(similarity).min()), nearest, spread


def fidelity(reference, output) -> float:
    """The least cosine of an output row to its reference row, or 0.0 where that proves
    nothing: reference rows not spread apart (mean pairwise cosine above SPREAD_COSINE), or a
    row nearer another input's reference than its own."""
    least, nearest, spread = fidelity_figures(reference, output)
    if spread is None or spread > SPREAD_COSINE or not nearest:
        return 0.0
    return least


def measure(torch_encoder, image_dir: Path, images: int = 4, rounds: int = 2) -> Choice | None:
    """Time onnxruntime fp32, torch fp32 and torch bf16 on a few inputs and pick the fastest
    faithful one (fp32 in either engine; bf16 where `fidelity` shows cosine >= MIN_COSINE);
    None if the export cannot be opened.  Costs a few seconds, once per machine and model;
    the reason it records gives every rate, so a user sees what `--precision bf16` would do."""
    import copy
    import time

    import numpy as np
    import torch

    from .base import normalised
    from .imageort import FastImageEncoder

    ort = FastImageEncoder.load(image_dir)
    model = getattr(torch_encoder, "model", None)
    if ort is None or model is None:
        return None
    size = ort.image_size
    pixels = np.random.default_rng(0).standard_normal((images, 3, size, size), np.float32)
    batch = torch.from_numpy(pixels)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)

    def run_bf16() -> np.ndarray:
        with torch.inference_mode():
            return normalised(bf16.encode_image(batch.bfloat16()).float().numpy())

    runners = {
        f"{ORT} {FP32}": lambda: ort.encode_images(pixels),
        f"{TORCH} {torch_encoder.precision}": lambda: torch_encoder.encode_images(batch),
        f"{TORCH} {BF16}": run_bf16,
    }
    reference = runners[f"{TORCH} {torch_encoder.precision}"]()
    rates, cosines = {}, {}
    for name, run in runners.items():
        output = run()  # also the warm-up
        if name.endswith(FP32):  # the same maths in another engine
            cosines[name] = float((output * reference).sum(1).min())
        else:
            cosines[name] = fidelity(reference, output)
        start = time.perf_counter()
        for _ in range(rounds):
            run()
        rates[name] = rounds * images / (time.perf_counter() - start)
    return pick_measured(rates, cosines)
