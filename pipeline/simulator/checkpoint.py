"""The versioned simulator checkpoint: a directory of safetensors files and `manifest.json`.

    manifest.json        format, format version, data schema version, log spec, dimensions,
                         training-data fingerprint, build config, metrics, file hashes
    <component>.safetensors   one per network (`weights.py`: no pickle)

Components: `customer_generator` (GAN-SD, P^c), `customer_policy` (MAIL's pi^c),
`engine_policy` (MAIL's pi_sigma), `bc_customer_policy` (the behaviour-cloning baseline),
`amount` (purchase amounts) and `density/<name>` (the density baselines of Table 1).

`load_simulator` accepts a directory or an MLflow artifact URI (`runs:/<run_id>/simulator`)
and checks format, schema version and every file's hash before any weights are read.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline import __version__
from pipeline.errors import UserError
from pipeline.logs.schema import SCHEMA_VERSION, LogSpec
from pipeline.simulator.config import Behaviour
from pipeline.simulator.customers import CustomerCodec
from pipeline.weights import load_module, save_module

FORMAT = "ecomrl-simulator"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    schema_version: str = SCHEMA_VERSION
    spec: LogSpec
    scenario: str
    time_slice: int | None
    observation_dim: int
    action_dim: int
    codec: dict
    data_fingerprint: str
    data_root: str
    config: dict
    metrics: dict[str, float] = {}
    files: dict[str, str] = {}  # component -> sha256 of its file
    ecomrl_version: str = __version__
    torch_version: str = torch.__version__
    created_at: str = ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def component_path(root: Path, name: str) -> Path:
    return root / f"{name}.safetensors"


def write_checkpoint(root: Path, manifest: Manifest, modules: dict) -> Manifest:
    """Write `modules` ({component: nn.Module}) and the manifest listing their hashes."""
    files = {}
    for name, module in modules.items():
        path = component_path(root, name)
        save_module(module, path)
        files[name] = _sha256(path)
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    manifest = manifest.model_copy(update={"files": files, "created_at": created})
    (root / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    return manifest


def resolve(location: str | Path) -> Path:
    """A local checkpoint directory, downloading it first when `location` is an MLflow URI."""
    text = str(location)
    if text.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
        import mlflow

        from pipeline import tracking

        mlflow.set_tracking_uri(tracking.tracking_uri())
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
        except Exception as exc:  # MLflow raises several unrelated types for a bad URI
            raise UserError(f"{text}: cannot download it from MLflow ({exc})") from exc
    return Path(location)


_BEHAVIOUR_COMPONENT = {Behaviour.MAIL: "customer_policy", Behaviour.BC: "bc_customer_policy"}


class Simulator:
    """A loaded checkpoint: its manifest and its components, read (and verified) on demand."""

    def __init__(self, root: Path, manifest: Manifest):
        self.root, self.manifest = root, manifest
        self.spec = manifest.spec
        self.codec = CustomerCodec.from_json(manifest.codec)

    def has(self, name: str) -> bool:
        return name in self.manifest.files

    def component(self, name: str, device: str | torch.device = "cpu") -> torch.nn.Module:
        if name not in self.manifest.files:
            raise UserError(f"{self.root}: the checkpoint has no {name!r} component")
        path = component_path(self.root, name)
        if not path.is_file():
            raise UserError(f"{path}: weights file listed in the manifest is missing")
        if _sha256(path) != self.manifest.files[name]:
            raise UserError(f"{path}: corrupt weights file (sha256 differs from the manifest)")
        return load_module(path, device)

    def customer_policy(self, behaviour: Behaviour, device: str | torch.device = "cpu"):
        """pi^c of `behaviour` (a CustomerPolicyNet)."""
        return self.component(_BEHAVIOUR_COMPONENT[Behaviour(behaviour)], device)

    @property
    def version(self) -> str:
        """What identifies this simulator: a digest of its components' sha256s (the manifest
        lists them), the same wherever the checkpoint is copied or downloaded."""
        files = json.dumps(self.manifest.files, sort_keys=True).encode()
        return hashlib.sha256(files).hexdigest()[:16]

    def check_action_dim(self, action_dim: int | None) -> None:
        if action_dim is not None and action_dim != self.manifest.action_dim:
            raise UserError(
                f"{self.root}: simulator built from logs with action dimension "
                f"{self.manifest.action_dim}, the environment is configured for {action_dim}"
            )


def load_simulator(location: str | Path) -> Simulator:
    root = resolve(location)
    path = root / MANIFEST
    if not path.is_file():
        raise UserError(f"{root}: not a simulator checkpoint (no {MANIFEST})")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: unreadable manifest ({exc})") from exc
    if raw.get("format") != FORMAT:
        raise UserError(f"{path}: format {raw.get('format')!r}, expected {FORMAT!r}")
    if raw.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: checkpoint format version {raw.get('format_version')!r}, "
            f"this ecomrl reads {FORMAT_VERSION}"
        )
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise UserError(
            f"{path}: built from logs of schema version {raw.get('schema_version')!r}, "
            f"this ecomrl reads schema version {SCHEMA_VERSION!r}"
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: invalid manifest ({exc.errors()[0]['msg']})") from exc
    return Simulator(root, manifest)
