"""Ranking-policy learners on RLlib's new API stack: PPO (RLlib's), TRPO and DDPG (ours, one
folder each), the ANC reward shaping (`anc.py`) and the training stage (`train.py`).

`registry.py` maps the names used everywhere (`ecomrl train --algo`, Tune configs) to RLlib
configs; the algorithm packages are imported only when their name is asked for.
"""
