"""`ReRank-v0`, the step rewards and the list advantages: hand-computed cases, masking, the
request groups of PPO-MC, bad configs and bad requests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.evaluation.postprocessing import Postprocessing
from rerank_data import make_rerank_data

import rllib_envs  # noqa: F401  (registers the envs)
from pipeline.errors import UserError
from pipeline.learners.ppo_mc.advantages import Baseline, ListAdvantages, group_baselines
from pipeline.logs.schema import read_contract
from pipeline.rerank.evaluator import EvaluatorKind, load_evaluator
from pipeline.rerank.requests import requests_from_table
from pipeline.rerank.rewards import RewardKind, returns_to_go, step_reward
from rllib_envs.rerank import ReRankConfig, ReRankVectorEnv, served_requests


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_rerank_data(tmp_path_factory.mktemp("rerank"))


def env_config(data, **extra) -> dict:
    return {"requests": str(data.requests), "evaluator": str(data.evaluators), **extra}


def test_step_rewards_by_hand():
    p, q = np.array([0.1, 0.2]), np.array([0.5, 1.0])
    assert np.allclose(step_reward(p, q, RewardKind.PAY), [0.1, 0.2])
    assert np.allclose(step_reward(p, q, RewardKind.GMV), [0.05, 0.2])
    # (1 - w) p + w p q with w = 0.25: 0.075 + 0.0125, 0.15 + 0.05
    assert np.allclose(step_reward(p, q, RewardKind.PAY_GMV, 0.25), [0.0875, 0.2])
    assert np.allclose(returns_to_go(np.array([1.0, 2.0, 3.0])), [6.0, 5.0, 3.0])


def test_group_baselines_leave_one_out():
    returns = [
        np.array([3.0, 1.0]),
        np.array([1.0, 1.0]),
        np.array([2.0, 0.0]),
        np.array([5.0, 4.0]),
    ]
    baselines = group_baselines([7, 7, 7, 9], returns)
    # draw 7: each episode's baseline is the mean of the two others; draw 9 is alone.
    assert np.allclose(baselines, [1.5, 0.5, 2.5, 0.5, 2.0, 1.0, 5.0, 4.0])


def _episode(rewards, draw, logged):
    k = len(rewards)
    return SingleAgentEpisode(
        observations=[np.zeros(1, np.float32)] * (k + 1),
        actions=[0] * k,
        rewards=list(rewards),
        infos=[{"draw": draw, "logged_rewards": np.asarray(logged)}] + [{}] * k,
        terminated=True,
        len_lookback_buffer=0,
    )


@pytest.mark.parametrize(
    ("baseline", "expected"),
    [
        (Baseline.NONE, [0.3, 0.2, 0.1, 0.1]),
        (Baseline.LOGGED, [0.3 - 0.2, 0.2 - 0.1, 0.1 - 0.2, 0.1 - 0.1]),
        (Baseline.LOGGED_RATE, [0.1 / 0.2, 0.1 / 0.1, -0.1 / 0.2, 0.0 / 0.1]),
        (Baseline.GROUP, [0.3 - 0.1, 0.2 - 0.1, 0.1 - 0.3, 0.1 - 0.2]),
    ],
)
def test_list_advantages_by_hand(baseline, expected):
    """Two lists of one request: rewards (0.1, 0.2) and (0.0, 0.1); the logged order's step
    rewards are (0.1, 0.1). Advantages are scaled by their std only (never centred)."""
    episodes = [_episode([0.1, 0.2], 5, [0.1, 0.1]), _episode([0.0, 0.1], 5, [0.1, 0.1])]
    batch = {"p": {}}
    ListAdvantages(baseline=baseline)(
        rl_module={"p": torch.nn.Linear(1, 1)}, episodes=episodes, batch=batch
    )
    expected = np.asarray(expected)
    got = batch["p"][Postprocessing.ADVANTAGES].numpy()
    assert np.allclose(got, expected / expected.std(), atol=1e-5)
    assert np.allclose(batch["p"][Postprocessing.VALUE_TARGETS].numpy(), [0.3, 0.2, 0.1, 0.1])


def test_list_advantages_need_whole_episodes():
    chunk = _episode([0.1, 0.2], 1, [0.1, 0.1])
    chunk.t_started = 3
    with pytest.raises(ValueError, match="complete_episodes"):
        ListAdvantages(baseline="none")(rl_module={}, episodes=[chunk], batch={})


def test_env_rewards_are_the_causal_evaluator(data):
    """Stepping a list gives, step by step, the evaluator's p(pay) of the item at its
    position (PAY) times the price quantile (GMV); the reset infos hold the logged order's."""
    torch.set_num_threads(1)
    evaluator = load_evaluator(data.evaluators, EvaluatorKind.CAUSAL)
    for reward in (RewardKind.PAY, RewardKind.GMV):
        env = ReRankVectorEnv(env_config(data, num_envs=4, reward=reward.value, split="all"))
        _, infos = env.reset(seed=3)
        rows = env._lists.rows.numpy()
        requests = env._lists.requests.take(rows)
        order = np.stack([np.flatnonzero(v)[::-1][:17] for v in requests.valid])  # any valid order
        rewards = np.stack([env.step(order[:, t])[1] for t in range(17)], axis=1)
        with torch.no_grad():
            _, logits = evaluator(
                torch.as_tensor(requests.user),
                torch.as_tensor(requests.items),
                torch.as_tensor(requests.valid),
                torch.as_tensor(order),
            )
            _, logged_logits = evaluator(
                torch.as_tensor(requests.user),
                torch.as_tensor(requests.items),
                torch.as_tensor(requests.valid),
                torch.as_tensor(requests.shown),
            )
        quantile = np.take_along_axis(requests.price_quantile, order, 1)
        logged_q = np.take_along_axis(requests.price_quantile, requests.shown, 1)
        scale = quantile if reward is RewardKind.GMV else 1.0
        logged_scale = logged_q if reward is RewardKind.GMV else 1.0
        assert np.allclose(rewards, torch.sigmoid(logits).numpy() * scale, atol=1e-5)
        assert np.allclose(
            infos["logged_rewards"], torch.sigmoid(logged_logits).numpy() * logged_scale, atol=1e-5
        )


def test_masking_and_autoreset(data):
    env = ReRankVectorEnv(env_config(data, num_envs=2, sizes=(17,)))
    obs, _ = env.reset(seed=0)
    assert env.single_observation_space.contains(
        {
            k: (v[0] if k == "action_mask" else {n: a[0] for n, a in v.items()})
            for k, v in obs.items()
        }
    )
    first = np.array([0, 1])
    obs, *_ = env.step(first)
    assert obs["action_mask"][0, 0] == 0 and obs["action_mask"][1, 1] == 0
    with pytest.raises(ValueError, match="already placed"):
        env.step(first)  # the same candidates again
    env = ReRankVectorEnv(env_config(data, num_envs=16, sizes=(17, 30)))
    obs, _ = env.reset(seed=0)
    valid = obs["observations"]["valid"]
    short = np.flatnonzero(valid.sum(1) == 17)  # 17-candidate requests padded to 30
    assert short.size and valid.shape[1] == 30
    assert (obs["action_mask"][short, 17:] == 0).all() and (valid[short, 17:] == 0).all()
    actions = np.zeros(16, dtype=np.int64)
    actions[short[0]] = 29
    with pytest.raises(ValueError, match="padding"):
        env.step(actions)
    env = ReRankVectorEnv(env_config(data, num_envs=1, sizes=(17, 30)))
    env.reset(seed=1)
    for t in range(17):
        mask = env._lists.mask()[0].numpy()
        _, reward, terminated, _, _ = env.step(np.array([np.flatnonzero(mask)[0]]))
        assert terminated[0] == (t == 16)
    obs, reward, terminated, _, infos = env.step(np.array([0]))  # NEXT_STEP autoreset
    assert reward[0] == 0 and not terminated[0] and "draw" in infos
    assert obs["action_mask"].sum() == obs["observations"]["valid"].sum()


def test_groups_share_a_request(data):
    env = ReRankVectorEnv(env_config(data, num_envs=8, group_size=4))
    _, infos = env.reset(seed=0)
    rows = env._lists.rows.numpy()
    assert (rows[:4] == rows[0]).all() and (rows[4:] == rows[4]).all()
    assert len(set(infos["draw"][:4])) == 1 and infos["draw"][0] != infos["draw"][4]


def test_gym_make_and_config_errors(data):
    env = gym.make("ReRank-v0", **env_config(data, sizes=(30,)))
    obs, info = env.reset(seed=0)
    assert obs["action_mask"].shape == (30,) and info["logged_rewards"].shape == (17,)
    with pytest.raises(UserError, match="multiple of group_size"):
        ReRankVectorEnv(env_config(data, num_envs=6, group_size=4))
    with pytest.raises(UserError, match="no request has n in"):
        ReRankVectorEnv(env_config(data, sizes=(23,)))
    with pytest.raises(UserError, match="causal"):
        ReRankVectorEnv({**env_config(data), "evaluator": str(data.requests)})
    with pytest.raises(UserError, match="reward"):
        ReRankConfig.parse(env_config(data, reward="profit"))


def test_split_is_disjoint_and_stable(data):
    train = served_requests(ReRankConfig.parse(env_config(data, split="train")))
    test = served_requests(ReRankConfig.parse(env_config(data, split="test")))
    assert not set(train.request_id) & set(test.request_id)
    again = served_requests(ReRankConfig.parse(env_config(data, split="test")))
    assert np.array_equal(test.request_id, again.request_id)


def test_bad_request_at_training_time_names_it(data):
    """Unvalidated data with a request shorter than k: an error naming the request, not a
    crash inside the env."""
    table = pq.read_table(data.requests)
    _, spec = read_contract(table.schema, "test")
    short = table.slice(0, 5)
    with pytest.raises(UserError, match=r"request \d+: fewer than k=40 candidates"):
        requests_from_table(short, spec, 40)
