"""Supervised engine policies from the logs: the paper's SL1 and SL2 baselines.

    config.py      SupervisedConfig (light: the CLI and the run config import it)
    supervised.py  the losses (eq. 4, 5) and training on Ray Data
"""
