"""Serve an exported engine policy: obs -> action with numpy in and out.

Standalone on purpose: this file imports the standard library, numpy and, when a policy is
loaded, torch (`load_policy`, TorchScript) or onnxruntime (`load_onnx_policy`); neither Ray nor
the rest of ecomrl. Copy it next to the serving code.

An export directory (`pipeline/export/policy.py`) holds:
    policy.pt    TorchScript module, obs float32 [batch, obs_dim] -> action float32
                 [batch, action_dim] in [-1, 1]: the ranking weights of the engine
    policy.onnx  the same graph for onnxruntime, when the export succeeded
    policy.json  the signature (shapes, observation encoding, files) and the metadata
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

SIGNATURE_FILE = "policy.json"
FORMAT_VERSION = 1

Runner = Callable[[np.ndarray], np.ndarray]


class LoadedPolicy:
    """A loaded policy: `policy(obs)` with obs of shape (batch, obs_dim) or (obs_dim,)."""

    def __init__(self, run: Runner, signature: dict):
        self._run = run
        self.signature = signature
        self.obs_dim: int = signature["input"]["shape"][1]
        self.action_dim: int = signature["output"]["shape"][1]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.ndim == 1
        batch = obs[None] if single else obs
        if batch.ndim != 2 or batch.shape[1] != self.obs_dim:
            raise ValueError(
                f"observation of shape {obs.shape}: this policy takes (batch, {self.obs_dim}) "
                f"float32, encoded as {SIGNATURE_FILE} 'input.encoding' says"
            )
        action = self._run(np.ascontiguousarray(batch))
        return action[0] if single else action


def read_signature(path: str | Path) -> tuple[Path, dict]:
    """The export directory (or a file in it) -> (directory, the contents of policy.json)."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    signature_file = directory / SIGNATURE_FILE
    if not signature_file.is_file():
        raise FileNotFoundError(f"{signature_file}: no policy signature (not an export dir?)")
    signature = json.loads(signature_file.read_text())
    if signature.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{signature_file}: format_version {signature.get('format_version')!r}, "
            f"this loader reads {FORMAT_VERSION}"
        )
    return directory, signature


def torchscript_runner(file: Path) -> Runner:
    import torch

    module = torch.jit.load(str(file), map_location="cpu").eval()

    def run(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(obs)).numpy()

    return run


def onnx_runner(file: Path) -> Runner:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda obs: session.run(None, {name: obs})[0]


def load_policy(path: str | Path) -> LoadedPolicy:
    """The TorchScript policy of an export directory (or of its policy.pt / policy.json)."""
    directory, signature = read_signature(path)
    return LoadedPolicy(
        torchscript_runner(directory / signature["files"]["torchscript"]), signature
    )


def load_onnx_policy(path: str | Path) -> LoadedPolicy:
    """The ONNX policy of an export directory, run by onnxruntime on the CPU."""
    directory, signature = read_signature(path)
    onnx_file = signature["files"]["onnx"]
    if onnx_file is None:
        raise FileNotFoundError(f"{directory}: exported without ONNX ({signature['onnx_error']})")
    return LoadedPolicy(onnx_runner(directory / onnx_file), signature)
