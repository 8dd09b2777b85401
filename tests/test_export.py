"""Policy export: TorchScript and ONNX files equal to the eager net, served by a loader that
needs neither Ray nor the training code, from a plain MLP and from an RLlib PPO module."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.baselines.supervised import SupervisedPolicy
from pipeline.export import policy as export
from pipeline.export.loader import load_onnx_policy, load_policy

OBS_DIM, ACTION_DIM = 12, 27
LOADER = Path(export.__file__).with_name("loader.py")


def mlp_policy() -> SupervisedPolicy:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    return SupervisedPolicy(
        rng.normal(size=OBS_DIM), rng.uniform(0.5, 2, OBS_DIM), ACTION_DIM, (16,)
    )


def eager(net: torch.nn.Module, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.as_tensor(obs)).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    net = mlp_policy()
    out = tmp_path_factory.mktemp("export")
    metadata = {"algo": "sl1", "spec": {"action_dim": ACTION_DIM}, "simulator": None}
    return net, export.export_policy(net, out, OBS_DIM, ACTION_DIM, metadata)


def observations(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, OBS_DIM)).astype(np.float32)


def test_export_writes_the_documented_signature(exported):
    _, result = exported
    signature = json.loads((result.directory / "policy.json").read_text())
    assert signature == result.signature
    assert signature["input"]["shape"] == ["batch", OBS_DIM]
    assert signature["output"] | {"meaning": None} == {
        "name": "action", "dtype": "float32", "shape": ["batch", ACTION_DIM],
        "low": -1.0, "high": 1.0, "meaning": None,
    }  # fmt: skip
    assert signature["files"] == {"torchscript": "policy.pt", "onnx": "policy.onnx"}
    assert signature["onnx_error"] is None
    assert {"algo", "spec", "simulator", "created"} <= set(signature["metadata"])
    assert signature["checks"]["onnx_max_abs_diff"] <= 1e-5


def test_torchscript_and_onnx_give_the_eager_actions(exported):
    net, result = exported
    obs = observations(33)
    expected = eager(net, obs)
    for load in (load_policy, load_onnx_policy):
        np.testing.assert_allclose(load(result.directory)(obs), expected, atol=1e-5)
    assert load_policy(result.torchscript)(obs[0]).shape == (ACTION_DIM,)  # one observation


def test_a_wrong_observation_width_is_a_clear_error(exported):
    policy = load_policy(exported[1].directory)
    with pytest.raises(ValueError, match=rf"takes \(batch, {OBS_DIM}\)"):
        policy(np.zeros((4, OBS_DIM + 1), np.float32))


def test_the_loader_serves_without_ray_or_the_training_code(exported, tmp_path):
    """The loader copied alone to a 'serving box', and imported from the package: ray can't be
    imported (sys.modules["ray"] = None) and no training code gets imported."""
    net, result = exported
    obs = observations(7)
    np.save(tmp_path / "obs.npy", obs)
    shutil.copy(LOADER, tmp_path / "serving_loader.py")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["ray"] = None
        import numpy as np
        import serving_loader
        import pipeline.export.loader as packaged
        obs = np.load("obs.npy")
        for module in (serving_loader, packaged):
            np.save(module.__name__ + ".npy", module.load_policy({str(result.directory)!r})(obs))
        print(sorted(m for m in sys.modules if m.startswith("pipeline")))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    imported = done.stdout.splitlines()[-1]
    assert imported == "['pipeline', 'pipeline.export', 'pipeline.export.loader']"
    for name in ("serving_loader", "pipeline.export.loader"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), eager(net, obs), atol=1e-5)


def test_a_failed_onnx_export_is_recorded_and_torchscript_still_served(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("no ONNX for this op")

    monkeypatch.setattr(export, "_export_onnx", fail)
    net = mlp_policy()
    result = export.export_policy(net, tmp_path, OBS_DIM, ACTION_DIM, {"algo": "sl2"})
    assert result.onnx is None and not (tmp_path / "policy.onnx").exists()
    assert result.signature["onnx_error"] == "RuntimeError: no ONNX for this op"
    with pytest.raises(FileNotFoundError, match="no ONNX for this op"):
        load_onnx_policy(tmp_path)
    obs = observations(3)
    np.testing.assert_allclose(load_policy(tmp_path)(obs), eager(net, obs), atol=1e-5)


def test_a_net_acting_outside_the_box_is_refused(tmp_path):
    with pytest.raises(ValueError, match="leave"):
        export.export_policy(
            torch.nn.Linear(OBS_DIM, ACTION_DIM), tmp_path, OBS_DIM, ACTION_DIM, {}
        )


def test_an_rllib_ppo_module_exports_its_gaussian_mean(tmp_path):
    import gymnasium as gym
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.columns import Columns

    action_space = gym.spaces.Box(-1, 1, (ACTION_DIM,), np.float32)
    config = (
        PPOConfig()
        .environment(
            observation_space=gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
            action_space=action_space,
        )
        .rl_module(model_config={"fcnet_hiddens": [32]})
    )
    torch.manual_seed(0)
    module = config.get_rl_module_spec(inference_only=True).build()
    net = export.policy_net(module, action_space)
    result = export.export_policy(net, tmp_path, OBS_DIM, ACTION_DIM, {"algo": "ppo"})

    obs = 3 * observations(50)  # wide enough that some means leave [-1, 1] and get clipped
    with torch.no_grad():
        inputs = module.forward_inference({Columns.OBS: torch.as_tensor(obs)})
    mean = inputs[Columns.ACTION_DIST_INPUTS][:, :ACTION_DIM].numpy()
    expected = np.clip(mean, -1, 1)
    assert (np.abs(mean) > 1).any()
    np.testing.assert_allclose(load_policy(tmp_path)(obs), expected, atol=1e-5)
    assert result.onnx is not None, result.signature["onnx_error"]
    np.testing.assert_allclose(load_onnx_policy(tmp_path)(obs), expected, atol=1e-5)


def test_an_rllib_module_with_deterministic_actions_exports_them_clipped(tmp_path):
    """A DDPG-like module whose forward_inference returns the actions themselves."""
    import gymnasium as gym
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.rllib.core.rl_module.torch import TorchRLModule

    class Actor(TorchRLModule):
        def setup(self):
            self.net = torch.nn.Linear(OBS_DIM, ACTION_DIM)

        def _forward(self, batch, **kwargs):
            return {Columns.ACTIONS: 2 * self.net(batch[Columns.OBS])}

    action_space = gym.spaces.Box(-1, 1, (ACTION_DIM,), np.float32)
    torch.manual_seed(0)
    module = RLModuleSpec(
        module_class=Actor,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
        action_space=action_space,
    ).build()
    export.export_policy(export.policy_net(module, action_space), tmp_path, OBS_DIM, ACTION_DIM, {})
    obs = observations(20)
    expected = np.clip(eager(module.net, obs) * 2, -1, 1)
    np.testing.assert_allclose(load_policy(tmp_path)(obs), expected, atol=1e-5)
