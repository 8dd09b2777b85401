r"""`ecomrl evaluate` as a Ray job, taking exactly that command's arguments
(`python -m pipeline.jobs.evaluate --help`). From the repository root:

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}}' \
        -- python -m pipeline.jobs.evaluate \
            /shared/simulator --out /shared/evaluation \
            --policy trpo_anc=/shared/trpo_anc/policy \
            --policy sl1=/shared/sl1 --no-progress
"""

from pipeline.jobs import run_command

COMMAND = ("evaluate",)

if __name__ == "__main__":
    run_command(COMMAND)
