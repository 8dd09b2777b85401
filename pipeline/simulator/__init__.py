"""Virtual-Taobao: the simulator learned from logs (paper, "Virtual-Taobao").

- `customers.py`, `data.py`: the customer representation and the training data it is read from;
- `gan_sd.py` (GAN-SD and the plain GAN), `wgan.py`, `gmm.py` behind `density.py`: P^c;
- `customer_policy.py`, `behaviour_cloning.py`, `mail.py`: the customer policy pi^c;
- `checkpoint.py`: the versioned simulator checkpoint; `build.py`: logs -> checkpoint;
- `fidelity.py`: the paper's fidelity experiments (Table 1, Figures 4 and 5).

Nothing here imports `pipeline.world`: the simulator only knows the world through its logs.
"""
