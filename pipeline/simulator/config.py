"""Typed configs of `ecomrl simulator build|evaluate` and their defaults: one source of truth.

Defaults are sized for the benchmark (200k page views, 2 cores, under 10 minutes); the paper's
own choices are kept where it states them (alpha = beta = 1, 10 GMM components, MAIL's RL
step by a policy-gradient learner).
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GanConfig(_Config):
    """GAN-SD (Algorithm 1); alpha = beta = 0 is the plain GAN baseline."""

    alpha: float = Field(1.0, ge=0, description="weight of the entropy term H(V(G(z)))")
    beta: float = Field(1.0, ge=0, description="weight of the KL term KL(V(x) || V(G(z)))")
    noise_dim: int = Field(32, ge=1)
    hidden: tuple[int, ...] = (256, 256)
    steps: int = Field(2000, ge=1, description="discriminator updates (outer loop of Alg. 1)")
    generator_steps: int = Field(1, ge=1, description="k: generator updates per outer step")
    batch_size: int = Field(512, ge=2)
    lr: float = Field(2e-4, gt=0)
    gumbel_temperature: float = Field(0.5, gt=0, description="straight-through Gumbel-softmax")


class WganConfig(_Config):
    """WGAN baseline (Arjovsky et al. 2017): critic with weight clipping, RMSprop."""

    noise_dim: int = Field(32, ge=1)
    hidden: tuple[int, ...] = (256, 256)
    steps: int = Field(2000, ge=1, description="generator updates")
    critic_steps: int = Field(5, ge=1, description="critic updates per generator update")
    clip: float = Field(0.01, gt=0, description="critic weight clipping bound")
    batch_size: int = Field(512, ge=2)
    lr: float = Field(5e-5, gt=0)
    gumbel_temperature: float = Field(0.5, gt=0)


class GmmConfig(_Config):
    components: int = Field(10, ge=1, description="paper: 'carefully chosen to 10'")
    max_iter: int = Field(200, ge=1)


class DensityConfig(_Config):
    gan_sd: GanConfig = GanConfig()
    gan: GanConfig = GanConfig(alpha=0.0, beta=0.0)
    wgan: WganConfig = WganConfig()
    gmm: GmmConfig = GmmConfig()


class PolicyLearner(enum.StrEnum):
    """RLlib learner of MAIL's RL step (Algorithm 2, line 12)."""

    PPO = "ppo"


class BehaviourConfig(_Config):
    """Behaviour cloning of pi^c (and pi_sigma): MAIL's warm start and its baseline."""

    hidden: tuple[int, ...] = (128, 128)
    epochs: int = Field(4, ge=1)
    batch_size: int = Field(1024, ge=2)
    lr: float = Field(1e-3, gt=0)
    validation_fraction: float = Field(0.1, ge=0, lt=1)


class MailConfig(_Config):
    """MAIL (Algorithm 2) on RLlib: the RL step is an RLlib learner, sampling scales over env
    runners; the discriminator R^c_theta is trained between RL steps."""

    learner: PolicyLearner = Field(PolicyLearner.PPO, description="RL step of Algorithm 2")
    iterations: int = Field(15, ge=0, description="I: outer iterations of Algorithm 2")
    env_steps_per_iteration: int = Field(8192, ge=64, description="J trajectories' worth")
    num_envs_per_env_runner: int = Field(256, ge=1, description="customers stepped at once")
    num_env_runners: int = Field(0, ge=0, description="0 samples in the driver")
    minibatch_size: int = Field(1024, ge=32)
    num_epochs: int = Field(2, ge=1)
    lr: float = Field(1e-4, gt=0)
    discriminator_hidden: tuple[int, ...] = (128, 128)
    discriminator_steps: int = Field(20, ge=1, description="updates of theta per iteration")
    discriminator_lr: float = Field(3e-4, gt=0)
    discriminator_batch_size: int = Field(1024, ge=2)


class SimulatorConfig(_Config):
    """`ecomrl simulator build`: GAN-SD, the density baselines, BC and MAIL from one log set."""

    scenario: str = Field("main_search", description="scenario of the logs to simulate")
    time_slice: int | None = Field(None, ge=0, le=11, description="train on one 2-hour slice")
    seed: int = Field(0, ge=0)
    density: DensityConfig = DensityConfig()
    behaviour: BehaviourConfig = BehaviourConfig()
    mail: MailConfig = MailConfig()
    amount_hidden: tuple[int, ...] = (64,)
