"""DDPG's TorchLearner: the critic and actor losses, one Adam each, and soft target updates.

On a replayed batch of n-step transitions (s, a, R, s', d) (RLlib's episode replay buffer gives
R = Σ_{i<n} γ^i r_i, s' = s_{t+n} and the column `n_step`; SAC's learner connectors add s'):

    critic:  minimise  L(θQ) = E[w · (Q(s, a) − y)²],   y = R + γⁿ (1 − d) Q'(s', μ'(s'))
    actor:   maximise  J(θμ) = E[Q(s, μ(s))],          i.e. minimise −Q(s, μ(s))
    targets: θ' ← τ θ + (1 − τ) θ'  after every gradient step (μ' and Q')

w are the importance weights of a prioritized buffer (1 with a uniform one). Q(s, μ(s)) is
computed through detached critic weights (ddpg_module.py), so one backward pass of the summed
loss gives each optimizer exactly its own gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.learner.utils import update_target_network
from ray.rllib.core.rl_module.apis import QNetAPI, TargetNetworkAPI
from ray.rllib.utils.metrics import NUM_TARGET_UPDATES, TD_ERROR_KEY

from pipeline.learners.ddpg.ddpg_module import Q_POLICY, Q_TARGET_NEXT, Q_VALUES


def td_target(
    rewards: torch.Tensor,
    q_target_next: torch.Tensor,
    terminateds: torch.Tensor,
    gamma: float,
    n_step: torch.Tensor | int = 1,
) -> torch.Tensor:
    """y = R + γⁿ (1 − d) Q'(s', μ'(s')): no bootstrap past a terminal state (a truncated one
    still bootstraps)."""
    return rewards + gamma**n_step * (1.0 - terminateds.float()) * q_target_next


class DDPGTorchLearner(TorchLearner):
    """Learner of `DDPGTorchRLModule` (see the module docstring for the losses)."""

    def build(self) -> None:
        # With `num_learners` >= 2 super().build() has wrapped each module in torch DDP, which
        # broadcast learner 0's weights: the target copies below start identical everywhere.
        super().build()
        for module in self.module._rl_modules.values():
            module.unwrapped().make_target_networks()

    @classmethod
    def rl_module_required_apis(cls) -> list[type]:
        return [QNetAPI, TargetNetworkAPI]

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        """Separate Adam optimizers: θμ at `actor_lr`, θQ at `critic_lr`."""
        module = self._module[module_id].unwrapped()  # the same parameters under DDP
        for name, net, lr in (
            ("actor", module.actor, config.actor_lr),
            ("critic", module.critic, config.critic_lr),
        ):
            params = self.get_parameters(net)
            self.register_optimizer(
                module_id=module_id,
                optimizer_name=name,
                optimizer=torch.optim.Adam(params),
                params=params,
                lr_or_lr_schedule=lr,
            )

    def compute_loss_for_module(
        self, *, module_id, config, batch: dict[str, Any], fwd_out: dict[str, Any]
    ) -> torch.Tensor:
        """L(θQ) + (−J(θμ)); each term reaches only its own network's weights."""
        y = td_target(
            batch[Columns.REWARDS],
            fwd_out[Q_TARGET_NEXT],
            batch[Columns.TERMINATEDS],
            config.gamma,
            batch["n_step"],
        )
        td_error = fwd_out[Q_VALUES] - y
        critic_loss = torch.mean(batch["weights"] * td_error**2)
        actor_loss = -torch.mean(fwd_out[Q_POLICY])
        # |δ| per row, for a prioritized buffer's priorities (popped by DDPG.training_step).
        self.metrics.log_value(
            (module_id, TD_ERROR_KEY), td_error.detach().abs(), reduce="item_series"
        )
        self.metrics.log_dict(
            {
                "critic_loss": critic_loss,
                "actor_loss": actor_loss,
                "q_mean": fwd_out[Q_VALUES].mean(),
                "td_error_mean": td_error.abs().mean(),
            },
            key=module_id,
            window=1,
        )
        return critic_loss + actor_loss

    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        """θ' ← τ θ + (1 − τ) θ' for (μ, μ') and (Q, Q') of every module."""
        super().after_gradient_based_update(timesteps=timesteps)
        for module_id, module in self.module._rl_modules.items():
            tau = self.config.get_config_for_module(module_id).tau
            for main_net, target_net in module.unwrapped().get_target_network_pairs():
                update_target_network(main_net=main_net, target_net=target_net, tau=tau)
            self.metrics.log_value((module_id, NUM_TARGET_UPDATES), 1, reduce="lifetime_sum")
