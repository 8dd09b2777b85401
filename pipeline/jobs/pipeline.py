r"""`ecomrl run` as a Ray job, taking exactly that command's arguments
(`python -m pipeline.jobs.pipeline --help`). From the repository root:

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}}' \
        -- python -m pipeline.jobs.pipeline \
            --workdir /shared/run --profile quick --no-progress
"""

from pipeline.jobs import run_command

COMMAND = ("run",)

if __name__ == "__main__":
    run_command(COMMAND)
