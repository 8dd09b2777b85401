"""Export a trained engine policy to files that serve without Ray or ecomrl's training code.

`export_policy` writes, into one directory:
    policy.pt    TorchScript (torch.jit.trace), loaded by `loader.load_policy`;
    policy.onnx  the ONNX graph (torch.onnx.export, dynamo exporter, dynamic batch dimension),
                 loaded by `loader.load_onnx_policy`; absent when the export or its check fails;
    policy.json  the signature: input `obs` float32 [batch, obs_dim] in the encoding of
                 pipeline/logs/observation.py, output `action` float32 [batch, action_dim] in
                 [-1, 1] (the ranking weights), the files, the checks and the caller's metadata.
Both files are checked against the eager net on random batches (atol 1e-5) through the loader's
own code paths before the export returns.

`policy_net` makes an RLlib RLModule such a net: the deterministic action, clipped to the Box.
"""

from __future__ import annotations

import datetime
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.export.loader import (
    FORMAT_VERSION,
    SIGNATURE_FILE,
    Runner,
    onnx_runner,
    torchscript_runner,
)

TORCHSCRIPT_FILE = "policy.pt"
ONNX_FILE = "policy.onnx"
ATOL = 1e-5
ACTION_LOW, ACTION_HIGH = -1.0, 1.0  # the engine's action space Box(-1, 1, (action_dim,))
CHECK_BATCHES = (1, 64)  # differ from the traced batch: the batch dimension must stay free
TRACE_BATCH = 8
OBS_ENCODING = (
    "pipeline/logs/observation.py encode_observation(spec): [one-hot(customer_attrs[g]) for each "
    "group g | one-hot(query_category) | customer_dense (null -> 0) | page_index / max_index | "
    "last_clicks / page_size], spec in metadata.spec"
)


@dataclass(frozen=True)
class ExportedPolicy:
    directory: Path
    torchscript: Path
    onnx: Path | None  # None when the ONNX export failed: see signature["onnx_error"]
    signature: dict  # the contents of policy.json


class RLModulePolicy(nn.Module):
    """An RLlib RLModule as a deterministic obs -> action net, clipped to the Box bounds.

    forward_inference gives either the actions (a deterministic actor, DDPG-like) or the action
    distribution's inputs, whose deterministic sample is the mode (the mean of PPO's diagonal
    Gaussian)."""

    def __init__(self, module: nn.Module, low: torch.Tensor, high: torch.Tensor):
        from ray.rllib.core.columns import Columns

        super().__init__()
        self.module = module
        self.keys = (Columns.OBS, Columns.ACTIONS, Columns.ACTION_DIST_INPUTS)
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs_key, actions_key, inputs_key = self.keys
        out = self.module.forward_inference({obs_key: obs})
        if actions_key in out:
            action = out[actions_key]
        else:
            dist = self.module.get_inference_action_dist_cls().from_logits(out[inputs_key])
            action = dist.to_deterministic().sample()
        return torch.clamp(action, self.low, self.high)


def policy_net(module: nn.Module, action_space) -> RLModulePolicy:
    """RLlib new-stack RLModule (torch) + its Box action space -> a traceable obs -> action net."""
    import gymnasium as gym

    if not isinstance(action_space, gym.spaces.Box):
        raise ValueError(f"action space {action_space}: only a Box has bounds to clip to")
    bounds = (
        torch.as_tensor(b, dtype=torch.float32) for b in (action_space.low, action_space.high)
    )
    return RLModulePolicy(module, *bounds).eval()


def _max_diff(run: Runner, net: nn.Module, batches: list[torch.Tensor]) -> float:
    with torch.no_grad():
        return max(float(abs(run(x.numpy()) - net(x).numpy()).max()) for x in batches)


def _export_onnx(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Dynamo exporter (torch 2.13's default, needs onnxscript), one self-contained file."""
    # Its op registry warns about every torchvision op it skips, torch's pytree about itself.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=["obs"],
            output_names=["action"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,
            dynamo=True,
            verbose=False,
        )


def _onnx(net: nn.Module, example: torch.Tensor, batches: list[torch.Tensor], path: Path) -> float:
    """Export, then check with onnxruntime: the largest difference from the eager net."""
    _export_onnx(net, example, path)
    diff = _max_diff(onnx_runner(path), net, batches)
    if not diff <= ATOL:
        raise ValueError(f"onnxruntime's actions differ from the eager net's by {diff:.2e}")
    return diff


def _check_actions(net: nn.Module, batches: list[torch.Tensor], action_dim: int) -> None:
    with torch.no_grad():
        for x in batches:
            action = net(x)
            if action.shape != (len(x), action_dim) or action.dtype != torch.float32:
                raise ValueError(
                    f"the net maps obs {tuple(x.shape)} to {action.dtype} {tuple(action.shape)}, "
                    f"expected float32 ({len(x)}, {action_dim})"
                )
            if action.min() < ACTION_LOW or action.max() > ACTION_HIGH:
                raise ValueError(f"the net's actions leave [{ACTION_LOW}, {ACTION_HIGH}]")


def _signature(
    obs_dim: int,
    action_dim: int,
    onnx: Path | None,
    onnx_error: str | None,
    checks: dict,
    metadata: dict,
) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "input": {"name": "obs", "dtype": "float32", "shape": ["batch", obs_dim],
                  "encoding": OBS_ENCODING},
        "output": {"name": "action", "dtype": "float32", "shape": ["batch", action_dim],
                   "low": ACTION_LOW, "high": ACTION_HIGH,
                   "meaning": "ranking weights: the engine action"},
        "files": {"torchscript": TORCHSCRIPT_FILE, "onnx": onnx and onnx.name},
        "onnx_error": onnx_error,
        "checks": checks,
        "metadata": metadata,
    }  # fmt: skip


def export_policy(
    net: nn.Module, out_dir: str | Path, obs_dim: int, action_dim: int, metadata: dict
) -> ExportedPolicy:
    """Write policy.pt, policy.onnx (when the ops allow) and policy.json into `out_dir`.

    `net` (put in eval mode) maps obs float32 (B, obs_dim) to actions (B, action_dim) in
    [-1, 1]. `metadata` (JSON: algo, spec, simulator, ...) is stored with a `created` time."""
    metadata = {"created": datetime.datetime.now(datetime.UTC).isoformat(), **metadata}
    json.dumps(metadata)  # not JSON: fail before writing anything
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    generator = torch.Generator().manual_seed(0)
    example, *batches = (
        torch.randn(n, obs_dim, generator=generator) for n in (TRACE_BATCH, *CHECK_BATCHES)
    )
    _check_actions(net, [example, *batches], action_dim)

    torchscript = out_dir / TORCHSCRIPT_FILE
    with torch.no_grad():
        torch.jit.trace(net, example).save(str(torchscript))
    torchscript_diff = _max_diff(torchscript_runner(torchscript), net, batches)
    if not torchscript_diff <= ATOL:
        raise RuntimeError(f"{torchscript}: differs from the eager net by {torchscript_diff:.2e}")

    onnx: Path | None = out_dir / ONNX_FILE
    onnx_diff, onnx_error = None, None
    try:
        onnx_diff = _onnx(net, example, batches, onnx)
    except Exception as exc:  # any exporter or runtime failure: serve TorchScript only
        logging.getLogger(__name__).warning("no ONNX export: %s", exc)
        onnx.unlink(missing_ok=True)
        first_line = next(iter(str(exc).splitlines()), "")[:500]  # the exporter's are long
        onnx, onnx_error = None, f"{type(exc).__name__}: {first_line}"

    checks = {
        "atol": ATOL,
        "batch_sizes": list(CHECK_BATCHES),
        "torchscript_max_abs_diff": torchscript_diff,
        "onnx_max_abs_diff": onnx_diff,
    }
    signature = _signature(obs_dim, action_dim, onnx, onnx_error, checks, metadata)
    (out_dir / SIGNATURE_FILE).write_text(json.dumps(signature, indent=2))
    return ExportedPolicy(out_dir, torchscript, onnx, signature)
