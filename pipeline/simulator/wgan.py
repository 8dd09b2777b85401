"""The WGAN baseline of Table 1 (Arjovsky, Chintala and Bottou 2017, Algorithm 1).

The generator is GAN-SD's (`CustomerGenerator`, straight-through Gumbel-softmax customers) and
the loop is GAN-SD's scaffolding (`gan_sd.fit_adversarial` runs `training_step`): only the
objective differs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pipeline.simulator.config import WganConfig
from pipeline.simulator.gan_sd import Minibatches, Step, generate, marginal_terms, report
from pipeline.simulator.networks import CustomerGenerator, mlp


def training_step(
    generator: CustomerGenerator,
    batches: Minibatches,
    config: WganConfig,
    slices: Sequence[slice],
) -> Step:
    """n_critic critic updates with weight clipping, then one generator update."""
    # GAN-SD's discriminator without the sigmoid: a score, not a probability.
    critic = mlp([batches.data.shape[1], *config.hidden, 1], nn.LeakyReLU)
    g_opt = torch.optim.RMSprop(generator.parameters(), lr=config.lr)
    c_opt = torch.optim.RMSprop(critic.parameters(), lr=config.lr)

    def step() -> dict[str, float]:
        for _ in range(config.critic_steps):
            with torch.no_grad():
                fake, _ = generate(generator, config.batch_size, config.gumbel_temperature)
            # The critic estimates the Wasserstein-1 distance E[C(x)] - E[C(G(z))].
            c_loss = critic(fake).mean() - critic(batches()).mean()
            c_opt.zero_grad()
            c_loss.backward()
            c_opt.step()
            with torch.no_grad():  # clipping keeps C (roughly) K-Lipschitz
                for p in critic.parameters():
                    p.clamp_(-config.clip, config.clip)
        fake, logits = generate(generator, config.batch_size, config.gumbel_temperature)
        g_loss = -critic(fake).mean()
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
        with torch.no_grad():  # logged only, to compare the curves with GAN-SD's
            h, divergence = marginal_terms(logits, batches(), slices)
        return report(c_loss, g_loss, h, divergence)

    return step
