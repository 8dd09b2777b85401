"""The product sequence generator (seed rl-rerank-generator-evaluator, "Product sequence
generator"): a pointer network whose LSTMs are replaced by DNNs scoring the remaining
candidates, so its parameters depend on neither n (candidates) nor k (list length).

At step t the state is the request (user u, candidates x_1..x_n) and the set C of candidates
chosen so far, order-free (the seed's causal evaluator only needs what is above). Candidate i
is scored as

    score_i = w^T relu(z_i + W_m mean_{j in C} x_j + w_c log1p|C| + w_s s_i) + b
    z_i     = f(x_i, u)                       (an MLP: W_x x_i + W_u u + b_1, relu, ...)
    s_i     = max_{j in C} cos(x_i, x_j)      (MMR-style redundancy; 0 while C is empty)

i.e. the pointer network's additive attention v^T tanh(W1 e_i + W2 d_t) with the LSTM encoder
e_i replaced by a per-candidate MLP and the LSTM decoder state d_t by an order-free summary of
C. The user enters through W_u u added to every candidate (not concatenated to each). The
chosen set joins at the last hidden layer, so all of f (for `hidden=(64,)`, the first layer's
candidate part) is computed once per request by `encode` and the k steps only add the state
terms, apply relu and one dot product per candidate: the speed against the LSTM.

PPO's critic "scores the remaining candidates and adds up the scores" with a second scorer of
the same form (`value_hidden`). `generate_lists` decodes batches outside RLlib (BP metric,
latency benchmark); `RerankGeneratorModule` is the network as an RLlib RLModule over
`ReRank-v0`'s observations {"action_mask", "observations": {"items", "user", "valid"}}.

Exploration (the seed's GAIL variant): with probability `exploration_epsilon` a uniformly
random remaining candidate is chosen. The module then samples from, and PPO trains, the
mixture (1 - eps) softmax + eps uniform(remaining), so the PPO ratio is the behaviour policy's.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.torch_utils import FLOAT_MIN
from torch import nn
from torch.nn import functional as F

from pipeline.rerank.config import GeneratorConfig
from pipeline.weights import loadable

# PPO and APPO add {"vf_share_layers": False} to every module's model_config; the generator's
# actor and critic never share layers, so only that value is accepted.
SHARED_LAYERS_KEY = "vf_share_layers"


class ChosenState(NamedTuple):
    """Order-free summary of the chosen set C."""

    weights: torch.Tensor  # (B, N) 1/|C| on chosen candidates, else 0
    log_count: torch.Tensor  # (B,) log1p|C|
    max_similarity: torch.Tensor  # (B, N) s_i, 0 while C is empty


class Encoded(NamedTuple):
    """The per-request part of the policy's scores, computed once for all k steps."""

    base: torch.Tensor  # (B, N, H) z_i
    chosen_proj: torch.Tensor  # (B, N, H) W_m x_i: its mean over C is the chosen-set term
    similarity: torch.Tensor  # (B, N, N) cos(x_i, x_j)
    padding: torch.Tensor  # (B, N) bool: not a real candidate


def cosine_similarity(items: torch.Tensor) -> torch.Tensor:
    """(B, N, N) cosine similarities between candidates (0 against all-zero padding)."""
    unit = F.normalize(items, dim=-1)
    return unit @ unit.transpose(1, 2)


def chosen_state(chosen: torch.Tensor, similarity: torch.Tensor) -> ChosenState:
    """The summary of C (`chosen`, (B, N) bool) given the candidates' cosine similarities."""
    count = chosen.sum(-1)
    weights = chosen.to(similarity.dtype) / count.clamp(min=1).unsqueeze(-1)
    to_chosen = similarity.masked_fill(~chosen.unsqueeze(1), -torch.inf).amax(-1)
    max_similarity = torch.where(count.unsqueeze(-1) > 0, to_chosen, 0.0)
    return ChosenState(weights, torch.log1p(count.to(similarity.dtype)), max_similarity)


class CandidateScorer(nn.Module):
    """score_i of the module docstring, hidden widths `hidden`."""

    def __init__(self, user_dim: int, item_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        width = hidden[-1]
        self.item = nn.Linear(item_dim, hidden[0])
        self.user = nn.Linear(user_dim, hidden[0], bias=False)
        self.tower = nn.ModuleList(itertools.starmap(nn.Linear, itertools.pairwise(hidden)))
        self.chosen_mean = nn.Linear(item_dim, width, bias=False)  # W_m
        self.context = nn.Linear(2, width, bias=False)  # columns w_c, w_s
        self.out = nn.Linear(width, 1)

    def encode(self, user: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_i, W_m x_i), each (B, N, H), from user (B, U) and items (B, N, D)."""
        z = self.item(items) + self.user(user).unsqueeze(1)
        for layer in self.tower:
            z = layer(torch.relu(z))
        return z, self.chosen_mean(items)

    def forward(self, encoded: tuple[torch.Tensor, torch.Tensor], state: ChosenState):
        """(B, N) scores given `encode`'s output and the chosen-set summary."""
        base, chosen_proj = encoded
        count_weight, similarity_weight = self.context.weight.unbind(1)
        mean_proj = torch.bmm(state.weights.unsqueeze(1), chosen_proj)  # (B, 1, H)
        shared = mean_proj + state.log_count[:, None, None] * count_weight
        redundancy = state.max_similarity.unsqueeze(-1) * similarity_weight
        return self.out(torch.relu(base + shared + redundancy)).squeeze(-1)


@loadable
class GeneratorNet(nn.Module):
    """Policy and critic scorers over (user (B, U), items (B, N, D), valid (B, N)), any N.
    `config` may be given as its dict (how `pipeline.weights` rebuilds a saved net)."""

    def __init__(self, user_dim: int, item_dim: int, config: GeneratorConfig | dict):
        super().__init__()
        config = GeneratorConfig.model_validate(config)
        self.policy = CandidateScorer(user_dim, item_dim, config.hidden)
        self.value = CandidateScorer(user_dim, item_dim, config.value_hidden)

    def encode(self, user: torch.Tensor, items: torch.Tensor, valid: torch.Tensor) -> Encoded:
        """The policy's per-request part, reused by every step of `step_logits`."""
        base, chosen_proj = self.policy.encode(user, items)
        return Encoded(base, chosen_proj, cosine_similarity(items), ~valid.bool())

    def step_logits(self, encoded: Encoded, chosen: torch.Tensor) -> torch.Tensor:
        """(B, N) unmasked scores of every candidate once `chosen` ((B, N) bool) are placed."""
        state = chosen_state(chosen, encoded.similarity)
        return self.policy((encoded.base, encoded.chosen_proj), state)

    def logits(
        self, user: torch.Tensor, items: torch.Tensor, valid: torch.Tensor, chosen: torch.Tensor
    ) -> torch.Tensor:
        return self.step_logits(self.encode(user, items, valid), chosen)

    def values(
        self, user: torch.Tensor, items: torch.Tensor, valid: torch.Tensor, chosen: torch.Tensor
    ) -> torch.Tensor:
        """(B,) the seed's critic: the sum of per-candidate scores over remaining candidates."""
        state = chosen_state(chosen, cosine_similarity(items))
        scores = self.value(self.value.encode(user, items), state)
        remaining = valid.bool() & ~chosen
        return torch.where(remaining, scores, 0.0).sum(-1)


def _pick(
    scores: torch.Tensor, greedy: bool, epsilon: float, generator: torch.Generator | None
) -> torch.Tensor:
    """One candidate per row where `scores` (-inf on blocked candidates) is finite: the argmax
    or a Gumbel-max sample, replaced with probability `epsilon` by a uniform one."""
    if not greedy:
        uniform = torch.rand(scores.shape, generator=generator, device=scores.device)
        scores = scores - torch.log(-torch.log(uniform.clamp_min(1e-20)))
    pick = scores.argmax(-1)
    if epsilon > 0:
        noise = torch.rand(scores.shape, generator=generator, device=scores.device)
        uniform_pick = torch.where(scores.isfinite(), noise, -1.0).argmax(-1)
        explore = torch.rand(pick.shape, generator=generator, device=pick.device) < epsilon
        pick = torch.where(explore, uniform_pick, pick)
    return pick


@torch.no_grad()
def generate_lists(
    net: GeneratorNet,
    user: torch.Tensor,
    items: torch.Tensor,
    valid: torch.Tensor,
    k: int,
    greedy: bool = True,
    generator: torch.Generator | None = None,
    epsilon: float = 0.0,
) -> torch.Tensor:
    """(B, k) candidate indices, top first: k distinct valid candidates per request, picked
    greedily or by sampling, a uniformly random one with probability `epsilon`.

    The scores of `step_logits`, computed for speed: the chosen-set summary is updated
    incrementally (running sum of W_m x_j, running max of s_i); the step's terms enter the
    last hidden layer as one batched matmul, z_i + [1, s_i] @ [W_m mean_C x + w_c log1p|C|;
    w_s]; and the mask enters the output layer's matmul, which leaves out the constant b
    (neither argmax nor softmax sees it)."""
    if int(valid.sum(-1).min()) < k:
        raise ValueError(f"every request needs at least k={k} valid candidates")
    scorer = net.policy
    encoded = net.encode(user, items, valid)
    base = encoded.base
    batch, n, width = base.shape
    like = {"dtype": base.dtype, "device": base.device}
    count_weight, similarity_weight = scorer.context.weight.unbind(1)
    steps = torch.log1p(torch.arange(k, **like))
    position = (steps.unsqueeze(-1) * count_weight).unbind(0)  # w_c log1p|C| at each step
    # The (B, N, 2) and (B, 2, H) matmul operands, their views written in place each step.
    terms = torch.zeros(batch, n, 2, **like)
    terms[..., 0] = 1.0
    weights = torch.stack(
        [torch.zeros(batch, width, **like), similarity_weight.expand(batch, -1)], 1
    )
    max_similarity, shared = terms[..., 1], weights[:, 0]
    sum_proj = torch.zeros(batch, width, **like)
    # Candidates as rows of (B * N, ...) tensors: one gather reads the chosen item's W_m x_j
    # and its similarities, and the mask is a column added inside the output matmul.
    offsets = torch.arange(0, batch * n, n, device=base.device)
    chosen_rows = torch.cat([encoded.chosen_proj, encoded.similarity], dim=-1).flatten(0, 1)
    penalty = torch.zeros(batch * n, 1, **like)
    penalty.masked_fill_(encoded.padding.reshape(batch * n, 1), -torch.inf)
    out_weight = scorer.out.weight.T
    picks = []
    for step in range(k):
        torch.add(position[step], sum_proj, alpha=1 / max(step, 1), out=shared)
        hidden = torch.baddbmm(base, terms, weights).relu_().flatten(0, 1)
        scores = torch.addmm(penalty, hidden, out_weight).view(batch, n)
        pick = _pick(scores, greedy, epsilon, generator)
        picks.append(pick)
        if step == k - 1:
            break
        flat = offsets + pick
        penalty.index_fill_(0, flat, -torch.inf)
        row = chosen_rows.index_select(0, flat)
        sum_proj.add_(row[:, :width])
        if step == 0:
            max_similarity.copy_(row[:, width:])
        else:
            torch.maximum(max_similarity, row[:, width:], out=max_similarity)
    return torch.stack(picks, dim=1)


def inf_mask(action_mask: torch.Tensor) -> torch.Tensor:
    """0 on allowed actions, FLOAT_MIN elsewhere (RLlib's action-masking example)."""
    return torch.clamp(torch.log(action_mask), min=FLOAT_MIN)


def mixture_log_probs(masked_logits: torch.Tensor, action_mask: torch.Tensor, epsilon: float):
    """log((1 - eps) softmax(logits) + eps uniform(mask)), ~FLOAT_MIN off the mask. In log
    space so that no log(0) appears (the bootstrap observation after the last step may have
    an empty mask)."""
    policy = torch.log_softmax(masked_logits, dim=-1) + math.log1p(-epsilon)
    allowed = action_mask.sum(-1, keepdim=True).clamp(min=1)
    uniform = math.log(epsilon) - torch.log(allowed) + inf_mask(action_mask)
    return torch.logaddexp(policy, uniform)


def _parse_model_config(model_config: dict[str, Any] | None) -> GeneratorConfig:
    keys = dict(model_config or {})
    if keys.pop(SHARED_LAYERS_KEY, False):
        raise ValueError("the generator's actor and critic cannot share layers")
    unknown = sorted(set(keys) - set(GeneratorConfig.model_fields))
    if unknown:
        raise ValueError(
            f"unknown generator model_config keys {unknown}; "
            f"allowed: {sorted(GeneratorConfig.model_fields)}"
        )
    return GeneratorConfig.model_validate(keys)


class RerankGeneratorModule(TorchRLModule, ValueFunctionAPI):
    """`GeneratorNet` over `ReRank-v0`'s observations: Dict(action_mask (N,), observations:
    Dict(items (N, D), user (U,), valid (N,))), action = a candidate index in Discrete(N).

    Action distribution inputs are masked logits, logits + clamp(log(mask), FLOAT_MIN); with
    `exploration_epsilon` > 0 exploration and training use the mixture's log-probabilities.
    RLlib's default for Discrete, `TorchCategorical`, is the distribution class."""

    def setup(self) -> None:
        self.generator_config = _parse_model_config(self.model_config)
        _check_spaces(self.observation_space, self.action_space)
        inputs = self.observation_space["observations"]
        self.net = GeneratorNet(
            user_dim=inputs["user"].shape[0],
            item_dim=inputs["items"].shape[-1],
            config=self.generator_config,
        )

    def _masked_logits(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        obs = batch[Columns.OBS]
        mask, inputs = obs["action_mask"], obs["observations"]
        logits = self.net.logits(inputs["user"], inputs["items"], inputs["valid"], _chosen(obs))
        return logits + inf_mask(mask), mask

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """Inference: the greedy policy's masked logits."""
        logits, _ = self._masked_logits(batch)
        return {Columns.ACTION_DIST_INPUTS: logits}

    def _behaviour(self, batch: dict[str, Any]) -> dict[str, Any]:
        logits, mask = self._masked_logits(batch)
        epsilon = self.generator_config.exploration_epsilon
        if epsilon > 0:
            logits = mixture_log_probs(logits, mask, epsilon)
        return {Columns.ACTION_DIST_INPUTS: logits}

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._behaviour(batch)

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._behaviour(batch)

    def compute_values(self, batch: dict[str, Any], embeddings=None) -> torch.Tensor:
        obs = batch[Columns.OBS]
        inputs = obs["observations"]
        return self.net.values(inputs["user"], inputs["items"], inputs["valid"], _chosen(obs))


def _check_spaces(observation_space: gym.Space, action_space: gym.Space) -> None:
    spaces = observation_space.spaces if isinstance(observation_space, gym.spaces.Dict) else {}
    observations = spaces.get("observations")
    inputs = observations.spaces if isinstance(observations, gym.spaces.Dict) else {}
    if set(spaces) != {"action_mask", "observations"} or set(inputs) != {"items", "user", "valid"}:
        raise ValueError(
            "the generator needs ReRank-v0's observations, Dict(action_mask, observations="
            f"Dict(items, user, valid)); got {observation_space}"
        )
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"the generator picks a candidate, Discrete(N); got {action_space}")


def _chosen(obs: dict[str, Any]) -> torch.Tensor:
    """Candidates placed so far: valid and no longer allowed."""
    return (obs["observations"]["valid"] - obs["action_mask"]) > 0.5


def module_spec(config: GeneratorConfig) -> RLModuleSpec:
    """The RLModuleSpec for `AlgorithmConfig.rl_module(rl_module_spec=...)`."""
    return RLModuleSpec(module_class=RerankGeneratorModule, model_config=config.model_dump())


def generator_net(module: RerankGeneratorModule) -> GeneratorNet:
    """The torch core of a (trained) module, for `generate_lists`."""
    if not isinstance(module, RerankGeneratorModule):
        raise TypeError(f"expected a RerankGeneratorModule, got {type(module).__name__}")
    return module.net
