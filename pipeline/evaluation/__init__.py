"""Deployment evaluation (design.md, "The evaluation protocol", items 2-4): policies scored in
the learned simulator and in the reference world on the same customers, and the paper's
experiments (ANC, RL vs supervised, generalisation) written as report.md with plots.

    scoring.py   one policy: world R2P/TT/TV by day with CIs, simulator R2P (MAIL and BC)
    report.py    the experiments' tables, the claims checked, plots
"""
