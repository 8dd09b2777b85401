"""Distributed data-parallel learners by config alone (`num_learners`, `num_gpus_per_learner`):
every learner trains through `ecomrl train` with two CPU learner actors (torch DDP over gloo)
and ends with bit-identical weights on both; a GPU config is accepted without a GPU; DDPG's
prioritized-replay priorities reach the transitions they belong to; the re-ranking PPO-MC's
list advantages are the whole batch's, and it trains with two identical learners."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from learner_settings import TINY as SINGLE
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.metrics import (
    LEARNER_RESULTS,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
    TD_ERROR_KEY,
)
from ray.rllib.utils.replay_buffers import PrioritizedEpisodeReplayBuffer
from simulator_factory import random_simulator

from pipeline.export.loader import load_policy
from pipeline.learners.config import TrainConfig
from pipeline.learners.ddpg.ddpg import DDPG, _pop_td_errors
from pipeline.learners.train import rllib_config, training_config

ALGOS = ["ppo", "trpo", "ddpg"]
# Per learner, as tests/learner_settings.py: `train_batch_size_per_learner` is PER learner, so two
# learners sample 256 env steps per PPO or TRPO iteration, and train on 128 each (PPO: two
# minibatch steps; TRPO: one natural-gradient step and two value steps). DDPG's one iteration
# (1000 env steps) makes tens of updates from a prioritized buffer, whose priorities come back
# from the learners' shards (DDPG._learner_row_order).
TINY = {
    **SINGLE,
    "ddpg": {**SINGLE["ddpg"], "replay_buffer_config": {"type": "PrioritizedEpisodeReplayBuffer"}},
}


@pytest.fixture(scope="module")
def simulator(tmp_path_factory) -> Path:
    return random_simulator(tmp_path_factory.mktemp("sim") / "simulator")


def _on_learners():
    """Functions to run on the learner actors (defined here, not at module level, so that Ray
    ships them by value: the actors cannot import this test module)."""

    def state(learner) -> dict:
        """The module's full state dict (DDPG's target networks included), whether it is
        DDP-wrapped, and the size of the torch.distributed world it is part of."""
        wrapped = learner.module[DEFAULT_MODULE_ID]
        weights = wrapped.unwrapped().state_dict()
        return {
            "weights": {name: tensor.detach().cpu().numpy() for name, tensor in weights.items()},
            "wrapper": type(wrapped).__name__,
            "world_size": torch.distributed.get_world_size(),
        }

    def weighted_mean(learner) -> dict:
        """Unequal shards of x = 1, 2, 3 (rank 0 holds 1 row, rank 1 two): TRPO's all_reduce
        of each shard's mean scaled by its share of the rows, of a value and of a gradient."""
        from pipeline.learners.trpo.trpo_learner import all_reduce_sum, shard_weight

        x = torch.arange(1.0, 4.0)[[0] if torch.distributed.get_rank() == 0 else [1, 2]]
        theta = torch.tensor(0.5, requires_grad=True)
        w = shard_weight(torch.tensor(float(len(x))))
        (grad,) = torch.autograd.grad(((theta * x - 1) ** 2).mean(), theta)
        return {
            "mean": all_reduce_sum(w * x.mean()).item(),
            "grad": all_reduce_sum(w * grad).item(),
        }

    return state, weighted_mean


@pytest.mark.slow
@pytest.mark.parametrize("algo", ALGOS)
def test_two_learners_train_by_config_and_stay_identical(
    cli, ray_session, one_torch_thread, simulator, tmp_path, monkeypatch, algo
):
    """`num_learners: 2` in the YAML: two learner actors of 1 CPU each (the ray_session's 2 CPUs;
    sampling runs in the driver, which Ray does not count, on one torch thread: the box has 2
    cores for the driver and both learners)."""
    at_stop = {}
    stop = Algorithm.stop
    state, weighted_mean = _on_learners()

    def stop_after_reading_the_learners(self):  # train_policy stops the Algorithm it built
        group = self.learner_group
        trained = (LEARNER_RESULTS, DEFAULT_MODULE_ID, NUM_MODULE_STEPS_TRAINED_LIFETIME)
        at_stop["trained"] = self.metrics.peek(trained, default=0)
        at_stop["learners"] = [r.get() for r in group.foreach_learner(state)]
        if algo == "trpo":
            at_stop["reduced"] = [r.get() for r in group.foreach_learner(weighted_mean)]
        stop(self)

    monkeypatch.setattr(Algorithm, "stop", stop_after_reading_the_learners)
    config = {
        "algo": algo,
        "env_steps": 256,  # one iteration: starting the two learner actors is what costs
        "num_envs_per_env_runner": 16,
        "hidden": [16],
        "initial_action_std": 0.1,
        "num_learners": 2,
        "num_gpus_per_learner": 0,
        "settings": TINY[algo],
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    code, stdout, err = cli(
        "train", simulator, "--out", out, "--config", path, "--anc-mu", "0.5", "--no-progress"
    )
    assert code == 0, err
    assert "runs:/" in stdout

    policy = load_policy(out / "policy")
    actions = policy(np.zeros((5, 104), np.float32))
    assert actions.shape == (5, 27) and np.all(np.abs(actions) <= 1)
    assert json.loads((out / "policy" / "policy.json").read_text())["metadata"]["algo"] == algo

    assert at_stop["trained"] > 0
    first, second = at_stop["learners"]
    assert first["wrapper"] == second["wrapper"] == "TorchDDPRLModule"
    assert first["world_size"] == second["world_size"] == 2
    assert first["weights"].keys() == second["weights"].keys()
    weights = first["weights"]
    different = [n for n in weights if not np.array_equal(weights[n], second["weights"][n])]
    assert not different, f"the learners' weights differ in {different}"
    if algo == "ddpg":
        assert any(name.startswith("target_") for name in first["weights"])
    if algo == "trpo":
        # Over all of x = 1, 2, 3: the mean is 2 and the gradient of mean((θx - 1)²) at
        # θ = 0.5 is 2/3 · Σ x (θx - 1) = 2/3; the plain mean of the shards' estimates would
        # be 1.75 and 0.25.
        for reduced in at_stop["reduced"]:
            assert reduced["mean"] == pytest.approx(2.0)
            assert reduced["grad"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("algo", ALGOS)
def test_a_gpu_config_is_accepted_by_config_alone(algo):
    """num_learners=2 and one GPU each go from TrainConfig to RLlib unchanged and validate; built
    under Tune the Algorithm asks for one GPU bundle per learner (not built here: no GPU)."""
    config = TrainConfig(algo=algo, num_learners=2, num_gpus_per_learner=1, anc=None)
    algo_config = rllib_config(training_config(config), "/no/simulator", config, None)
    algo_config.validate()
    assert algo_config.num_learners == 2
    assert algo_config.num_gpus_per_learner == 1
    bundles = algo_config.algo_class.default_resource_request(algo_config).bundles
    assert [b for b in bundles if b.get("GPU")] == [{"GPU": 1.0}] * 2


def _transition(reward: float) -> SingleAgentEpisode:
    """A replayed n-step transition as the episode replay buffer returns it: length 1."""
    obs = np.zeros(3, np.float32)
    return SingleAgentEpisode(
        observations=[obs, obs],
        actions=[np.zeros(1, np.float32)],
        rewards=[reward],
        len_lookback_buffer=0,
    )


@pytest.mark.parametrize("num_learners", [1, 2, 3])
def test_ddpg_priorities_go_back_to_their_transitions(num_learners):
    """The learner group deals replayed transitions to the learners in turn and each learner
    returns |δ| for its shard; DDPG puts them back in the order the buffer sampled them. The
    rows here carry their own sample position as reward and |δ|."""
    episodes = [_transition(float(i)) for i in range(11)]
    algo = SimpleNamespace(
        learner_group=[None] * num_learners,
        local_replay_buffer=PrioritizedEpisodeReplayBuffer(),
        config=SimpleNamespace(episode_lookback_horizon=1),
    )
    order = DDPG._learner_row_order(algo, episodes)
    # What LearnerGroup.update does with `episodes` before the remote learners see them.
    shards = TrainingData(episodes=episodes).shard(num_shards=num_learners, len_lookback_buffer=1)
    rows = [np.concatenate([e.get_rewards() for e in shard.episodes]) for shard, _ in shards]
    results = [
        {DEFAULT_MODULE_ID: {TD_ERROR_KEY: SimpleNamespace(peek=lambda r=r: [r])}} for r in rows
    ]
    td_errors = _pop_td_errors(results, order)[DEFAULT_MODULE_ID][TD_ERROR_KEY]
    np.testing.assert_array_equal(td_errors, np.arange(11.0))
    if num_learners > 1:
        assert order is not None and not np.array_equal(order, np.arange(11))


def _list_episode(draw: int, rewards: list[float], logged: list[float]) -> SingleAgentEpisode:
    """A whole re-ranking list as ReRank-v0 leaves it: terminated, its request's draw and the
    logged order's rewards in the reset infos."""
    k = len(rewards)
    obs = np.zeros(2, np.float32)
    return SingleAgentEpisode(
        observations=[obs] * (k + 1),
        infos=[{"draw": draw, "logged_rewards": np.asarray(logged)}] + [{}] * k,
        actions=list(range(k)),
        rewards=rewards,
        terminated=True,
        len_lookback_buffer=0,
    )


@pytest.mark.parametrize("baseline", ["group", "logged_rate"])
def test_list_advantages_of_sharded_lists_are_the_whole_batch_ones(monkeypatch, baseline):
    """PPO-MC with two learners: RLlib deals the lists to the learners in turn (the lists of one
    request, dealt consecutively, land on both) and cuts one in two (5 lists of 3 steps in two
    shards of 7 and 8 steps). Each learner's advantages, computed from every learner's pieces,
    are its rows of the single-learner advantages of the whole batch."""
    from pipeline.learners.ppo_mc import advantages as list_advantages
    from pipeline.learners.ppo_mc.advantages import ListAdvantages, Piece

    rng = np.random.default_rng(0)
    episodes = [
        _list_episode(i // 2, rng.random(3).tolist(), (0.5 + rng.random(3)).tolist())
        for i in range(5)
    ]
    module = {DEFAULT_MODULE_ID: torch.nn.Linear(1, 1)}
    connector = ListAdvantages(baseline=baseline)

    def advantages(shard) -> dict[tuple, float]:
        batch = connector(rl_module=module, episodes=shard, batch={DEFAULT_MODULE_ID: {}})
        rows = [(e.id_, e.t_started + t) for e in shard for t in range(len(e))]
        values = batch[DEFAULT_MODULE_ID]["advantages"].numpy()
        return dict(zip(rows, values, strict=True))

    whole = advantages(episodes)
    shards = TrainingData(episodes=episodes).shard(num_shards=2, len_lookback_buffer=1)
    shards = [td.episodes for td, _ in shards]  # as LearnerGroup.update deals them
    assert sorted(len(e) for shard in shards for e in shard) == [1, 2, 3, 3, 3, 3]  # one cut
    everyone = [Piece.of(e) for shard in shards for e in shard]
    monkeypatch.setattr(list_advantages, "gather_pieces", lambda local: everyone)
    sharded = {}
    for shard in shards:
        sharded.update(advantages(shard))
    assert sharded.keys() == whole.keys()
    np.testing.assert_allclose([sharded[row] for row in whole], list(whole.values()), rtol=1e-6)


@pytest.mark.slow
def test_ppo_mc_trains_with_two_learners_that_stay_identical(
    ray_session, one_torch_thread, tmp_path
):
    """The re-ranking PPO-MC (and GAIL, the same learner) with `num_learners: 2` in its run
    config: the generator's unused value head no longer stops DDP, and both learners end
    identical."""
    from rerank_data import make_rerank_data

    from pipeline.rerank.config import RerankConfig
    from pipeline.rerank.train import rllib_config as rerank_config

    data = make_rerank_data(tmp_path / "rerank")
    tiny = {"num_envs": 16, "group_size": 4, "minibatch_size": 128, "num_epochs": 2}
    study = RerankConfig(runs={"run": {"learner": "ppo_mc", "num_learners": 2, **tiny}})
    config = rerank_config(data.requests, data.evaluators.parent, study.run("run"), study)
    algo = config.build_algo()
    state, _ = _on_learners()
    try:
        result = algo.train()
        first, second = (r.get() for r in algo.learner_group.foreach_learner(state))
    finally:
        algo.stop()
    assert np.isfinite(result["learners"][DEFAULT_MODULE_ID]["entropy"])
    assert first["wrapper"] == "TorchDDPRLModule"
    assert all(np.array_equal(first["weights"][n], second["weights"][n]) for n in first["weights"])
