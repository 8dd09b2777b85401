"""Virtual-Taobao: the simulator learned from logs (paper, "Virtual-Taobao").

- `customers.py`, `data.py`: the customer representation and the training data it is read from;
- `networks.py` (every MLP), `weights.py` (safetensors, no pickle);
- `gan_sd.py` (GAN-SD and the plain GAN), `wgan.py`, `gmm.py` behind `density.py`: P^c;
- `behaviour_cloning.py`, `mail.py` with `mail_env.py`: the customer policy pi^c;
- `sessions.py`: batched sessions and T^c, stepped by MAIL's env and `VirtualTaobao-v0`;
- `checkpoint.py`: the versioned simulator checkpoint; `build.py`: logs -> checkpoint;
- `fidelity.py`, `fidelity_report.py`: the paper's fidelity experiments (Table 1, Figures 3-5).

Nothing here imports `pipeline.world`: the simulator only knows the world through its logs.
"""
