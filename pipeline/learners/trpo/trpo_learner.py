"""TRPO's update on RLlib's TorchLearner (Schulman et al. 2015, "Trust Region Policy Optimization").

One update sees the whole train batch, with advantages Â and value targets from RLlib's
`GeneralAdvantageEstimation` learner connector (as in PPO), and does for each module:

1. policy step: maximise the surrogate L(θ) = E[π_θ(a|s) / π_old(a|s) · Â] subject to
   E[KL(π_old ‖ π_θ)] ≤ δ. With g = ∇L(θ_old) and F the Hessian of the mean KL at θ_old:
       s = F⁻¹g by conjugate gradient on products F·v (double backprop, plus damping · v),
       full step = sqrt(2δ / sᵀFs) · s,
   then backtracking: θ = θ_old + shrinkʲ · full step for j = 0, 1, ..., keeping the first with
   L(θ) > L(θ_old) and KL ≤ δ, and θ_old if none passes;
2. value step: V_φ regressed on the value targets, E[(V_φ(s) - V̂)²], by Adam (`vf_lr`) over
   `vf_epochs` epochs of minibatches.

Several learners (`num_learners` >= 2, torch DDP over gloo on CPU, NCCL on GPUs) each hold a
shard k of the batch, n_k of its N rows. RLlib wraps their modules in `TorchDDPRLModule`, but DDP
only averages gradients that flow through its own forward and `backward()`; the TRPO step uses
`torch.autograd.grad` on the unwrapped module, so it does its own all_reduces instead
(`torch.distributed`, initialised by RLlib's learner group). Every quantity of the step is a
mean over rows, and the mean over all N rows is Σ_k (n_k / N) · (mean over shard k): each
learner scales its shard's mean by its share w_k = n_k / N (`shard_weight`) and the all_reduce
sums them. That holds for

    g (the surrogate's gradient), every F·v (F is the Hessian of the mean KL, so it is the
    weighted sum of the shards' Hessians), the line search's (L(θ) − L(θ_old), KL), the
    advantages' mean and standard deviation, and the value loss's gradients;

so every learner computes the full-batch g, the same CG iterates, the same step and line-search
decision, and the same Adam steps: the weights stay identical without being broadcast. This is
single-learner TRPO on the whole batch, not an approximation of it (and not a plain average of
the shards' estimates, which would weight unequal shards wrongly), with two exceptions, both in
how RLlib's learner group shards episodes before the learners see them:

- RLlib's GAE connector standardises the advantages over the rows it sees, i.e. per shard;
  `_advantages` redoes the standardisation with all learners' mean and std;
- the learner group cuts an episode in two where a shard fills up (at most `num_learners` − 1
  episodes per batch): GAE then bootstraps from V at the cut, as at the end of a rollout
  fragment, instead of seeing the rest of that episode's rewards.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import tree
from ray.rllib.connectors.learner import (
    AddOneTsToEpisodesAndTruncate,
    GeneralAdvantageEstimation,
)
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import ENTROPY_KEY, VF_LOSS_KEY
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, ValueFunctionAPI
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.annotations import override
from torch import distributed, nn

KL_KEY = "kl"
SURROGATE_IMPROVEMENT_KEY = "surrogate_improvement"
LINE_SEARCH_STEPS_KEY = "line_search_steps_taken"
STEP_ACCEPTED_KEY = "step_accepted"
POLICY_GRAD_NORM_KEY = "policy_grad_norm"


def world_size() -> int:
    """The number of data-parallel learners (1 when torch.distributed is not initialised)."""
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_world_size()
    return 1


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Σ over the learners of x, in place (x itself with one learner). Every learner gets the
    same bits back."""
    if world_size() > 1:
        distributed.all_reduce(x)
    return x


def shard_weight(rows: torch.Tensor) -> torch.Tensor:
    """w_k = n_k / Σ_j n_j, this learner's share of all learners' rows (1 with one learner):
    all_reduce_sum(w_k · mean over shard k) is the mean over all rows, whatever the sizes."""
    if world_size() == 1:
        return torch.ones_like(rows)
    return rows / all_reduce_sum(rows.clone()).clamp_min(1)


def num_rows(mask: torch.Tensor | None, size: int, device) -> torch.Tensor:
    """The rows `masked_mean` averages over, as a float tensor on `device`."""
    if mask is None:
        return torch.tensor(float(size), device=device)
    return mask.sum().float()


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real timesteps (the mask drops the one GAE's bootstrap adds per episode);
    0 where there are none."""
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp_min(1)


def flat_grad(y: torch.Tensor, params: list[nn.Parameter], **kwargs) -> torch.Tensor:
    """∂y/∂params as one vector (zeros for parameters y does not depend on)."""
    grads = torch.autograd.grad(y, params, materialize_grads=True, **kwargs)
    return torch.cat([g.reshape(-1) for g in grads])


def take(batch: dict, rows: torch.Tensor) -> dict:
    """The given rows of every (possibly nested) column of `batch`."""
    return tree.map_structure(lambda column: column[rows], dict(batch))


@torch.no_grad()
def assign(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    """Write the vector `flat` into `params`, in place."""
    for p, chunk in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.copy_(chunk.view_as(p))


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, tol: float = 1e-10
) -> torch.Tensor:
    """x ≈ A⁻¹b for symmetric positive definite A known only through products A·v."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr, rr_old = r @ r, rr
        p = r + (rr / rr_old) * p
    return x


class LineSearch(NamedTuple):
    steps_taken: int  # all of them where no step is accepted
    accepted: bool
    improvement: float  # L(θ) - L(θ_old) of the accepted step, 0 if none
    kl: float  # E[KL(π_old ‖ π_θ)] of the accepted step, 0 if none


def backtracking_line_search(
    evaluate: Callable[[float], tuple[torch.Tensor, torch.Tensor]],
    kl_bound: float,
    steps: int,
    shrink: float,
) -> LineSearch:
    """The first fraction f = shrinkʲ (j < steps) of the full step whose evaluate(f) =
    (surrogate improvement, KL) improves the surrogate within the trust region KL ≤ δ."""
    for j in range(steps):
        improvement, kl = evaluate(shrink**j)
        if improvement > 0 and kl <= kl_bound:
            return LineSearch(j + 1, True, float(improvement), float(kl))
    return LineSearch(steps, False, 0.0, 0.0)


def split_parameters(module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(θ, φ): φ are the value function's parameters, the module's non-inference attributes
    (RLlib's `InferenceOnlyAPI`: what acting does not need); θ are all the others."""
    phi = [
        p
        for name in module.get_non_inference_attributes()
        for p in module.get_submodule(name).parameters()
    ]
    value_ids = {id(p) for p in phi}
    return [p for p in module.parameters() if id(p) not in value_ids], phi


class TRPOTorchLearner(TorchLearner):
    """See the module docstring. Overrides `_update` (one TRPO step needs the whole batch,
    not RLlib's per-minibatch loss → gradients → optimizer step) and keeps RLlib's connectors,
    metrics and module handling; the value step reuses RLlib's gradient machinery."""

    @override(TorchLearner)
    def build(self) -> None:
        super().build()
        if (
            self._learner_connector is not None
            and self.config.add_default_connectors_to_learner_pipeline
        ):
            # As PPO: one extra timestep per episode for the bootstrap value, then GAE.
            self._learner_connector.prepend(AddOneTsToEpisodesAndTruncate())
            self._learner_connector.append(
                GeneralAdvantageEstimation(gamma=self.config.gamma, lambda_=self.config.lambda_)
            )

    @classmethod
    @override(TorchLearner)
    def rl_module_required_apis(cls) -> list[type]:
        return [ValueFunctionAPI, InferenceOnlyAPI]

    @override(TorchLearner)
    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        """Adam on V_φ only: θ moves by the trust-region step, never by an optimizer."""
        _, phi = split_parameters(self._module[module_id].unwrapped())
        self.register_optimizer(
            module_id=module_id,
            optimizer_name="vf",
            optimizer=torch.optim.Adam(phi),
            params=phi,
            lr_or_lr_schedule=config.vf_lr,
        )

    @override(TorchLearner)
    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out) -> torch.Tensor:
        """The value loss E[(V_φ(s) - V̂)²]."""
        module = self.module[module_id].unwrapped()
        values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
        errors = (values - batch[Postprocessing.VALUE_TARGETS]) ** 2
        return masked_mean(errors, batch.get(Columns.LOSS_MASK))

    @override(TorchLearner)
    def _update(self, batch: dict) -> tuple[dict, dict, dict]:
        """The whole batch: a policy step per module, then the value regression. Metrics go to
        `self.metrics`; no single loss describes the update, so none is returned."""
        self._compute_off_policyness(batch)
        for module_id, module_batch in batch.items():
            self._policy_step(module_id, module_batch)
        self._value_regression(batch)
        return {}, {}, {}

    def _policy_step(self, module_id, batch) -> None:
        config = self.config.get_config_for_module(module_id)
        module = self.module[module_id].unwrapped()
        theta, _ = split_parameters(module)
        dist_cls = module.get_train_action_dist_cls()
        mask = batch.get(Columns.LOSS_MASK)

        actions = batch[Columns.ACTIONS]
        advantages = self._advantages(module, batch)
        # All means below are over this shard's rows; w · mean summed over the learners is the
        # mean over all of them (module docstring). w = 1 with one learner.
        w = shard_weight(num_rows(mask, len(actions), actions.device))

        def policy():
            return dist_cls.from_logits(module.forward_train(batch)[Columns.ACTION_DIST_INPUTS])

        with torch.no_grad():
            old = policy()
            logp_old = old.logp(actions)

        def surrogate(pi) -> torch.Tensor:  # L(θ) = E[π_θ(a|s) / π_old(a|s) · Â]
            return masked_mean(torch.exp(pi.logp(actions) - logp_old) * advantages, mask)

        def mean_kl(pi) -> torch.Tensor:  # E[KL(π_old ‖ π_θ)]
            return masked_mean(old.kl(pi), mask)

        g = all_reduce_sum(w * flat_grad(surrogate(policy()), theta))
        kl_grad = flat_grad(mean_kl(policy()), theta, create_graph=True)

        def fisher_vector_product(v: torch.Tensor) -> torch.Tensor:  # (F + damping·I) v
            fv = flat_grad(kl_grad @ v, theta, retain_graph=True)
            return all_reduce_sum(w * fv) + config.cg_damping * v

        s = conjugate_gradient(fisher_vector_product, g, config.cg_iters)
        s_f_s = (s @ fisher_vector_product(s)).clamp_min(torch.finfo(s.dtype).tiny)  # 0 iff g = 0
        full_step = torch.sqrt(2 * config.kl_bound / s_f_s) * s
        theta_old = torch.cat([p.detach().reshape(-1) for p in theta])
        surrogate_old = surrogate(old)

        @torch.no_grad()
        def evaluate(fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
            assign(theta, theta_old + fraction * full_step)
            pi = policy()
            improvement, kl = all_reduce_sum(
                w * torch.stack([surrogate(pi) - surrogate_old, mean_kl(pi)])
            )
            return improvement, kl

        search = backtracking_line_search(
            evaluate, config.kl_bound, config.line_search_steps, config.line_search_shrink
        )
        if not search.accepted:
            assign(theta, theta_old)
        self.metrics.log_dict(
            {
                KL_KEY: search.kl,
                SURROGATE_IMPROVEMENT_KEY: search.improvement,
                LINE_SEARCH_STEPS_KEY: search.steps_taken,
                STEP_ACCEPTED_KEY: float(search.accepted),
                POLICY_GRAD_NORM_KEY: g.norm().item(),
                ENTROPY_KEY: masked_mean(old.entropy(), mask).item(),  # of π_old
            },
            key=module_id,
            window=1,
        )

    def _advantages(self, module, batch) -> torch.Tensor:
        """Â as one learner with the whole batch would have them. RLlib's GAE connector
        standardises A = V̂ − V(s) over the rows it sees (all of them, the masked bootstrap rows
        included), i.e. over this learner's shard only. With several learners A is rebuilt
        from the value targets (the module has not changed since the connector ran) and
        standardised with the mean and std over all learners' rows."""
        if world_size() == 1:
            return batch[Postprocessing.ADVANTAGES]
        with torch.no_grad():
            raw = (batch[Postprocessing.VALUE_TARGETS] - module.compute_values(batch)).double()
        w = shard_weight(torch.tensor(float(len(raw)), dtype=raw.dtype, device=raw.device))
        mean, mean_square = all_reduce_sum(w * torch.stack([raw.mean(), (raw**2).mean()]))
        std = (mean_square - mean**2).clamp_min(0).sqrt()  # numpy's std (ddof=0), as RLlib
        return ((raw - mean) / std.clamp_min(1e-4)).float()

    def _value_regression(self, batch: dict) -> None:
        """`vf_epochs` epochs of Adam steps on the value loss, each epoch over the same number
        of minibatches on every learner (from the config, not the local shard's size), so that
        the learners' gradient all_reduces pair up."""
        num_minibatches = math.ceil(
            self.config.train_batch_size_per_learner / self.config.vf_minibatch_size
        )
        losses = []
        for _ in range(self.config.vf_epochs):
            shuffled = {
                mid: torch.randperm(len(b), device=self._device).tensor_split(num_minibatches)
                for mid, b in batch.items()
            }
            for i in range(num_minibatches):
                minibatch = {mid: take(batch[mid], rows[i]) for mid, rows in shuffled.items()}
                losses.append(self._value_step(minibatch))
        for module_id in batch:
            vf_loss = torch.stack([loss[module_id] for loss in losses]).mean()
            self.metrics.log_value((module_id, VF_LOSS_KEY), vf_loss.item(), window=1)

    def _value_step(self, minibatch: dict) -> dict:
        """One optimizer step on the value losses. With several learners each one's loss is
        scaled by its share w of the minibatch rows before `backward()` and the gradients are
        summed (one all_reduce): the gradient of the value loss over all learners' rows."""
        losses = {
            mid: self.compute_loss_for_module(
                module_id=mid,
                config=self.config.get_config_for_module(mid),
                batch=b,
                fwd_out={},
            )
            for mid, b in minibatch.items()
        }
        scaled = losses
        if world_size() > 1:
            scaled = {
                mid: loss * shard_weight(num_rows(b.get(Columns.LOSS_MASK), len(b), loss.device))
                for (mid, loss), b in zip(losses.items(), minibatch.values(), strict=True)
            }
        grads = {ref: g for ref, g in self.compute_gradients(scaled).items() if g is not None}
        if world_size() > 1 and grads:
            flat = all_reduce_sum(torch.cat([g.reshape(-1) for g in grads.values()]))
            sizes = [g.numel() for g in grads.values()]
            grads = {
                ref: chunk.view_as(g)
                for (ref, g), chunk in zip(grads.items(), flat.split(sizes), strict=True)
            }
        self.apply_gradients(self.postprocess_gradients(grads))
        return {mid: loss.detach() for mid, loss in losses.items()}
