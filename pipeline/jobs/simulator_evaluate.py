r"""`ecomrl simulator evaluate` as a Ray job, taking exactly that command's arguments
(`python -m pipeline.jobs.simulator_evaluate --help`). From the repository root:

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}}' \
        -- python -m pipeline.jobs.simulator_evaluate \
            /shared/simulator --logs /shared/ingested \
            --out /shared/fidelity --no-progress
"""

from pipeline.jobs import run_command

COMMAND = ("simulator", "evaluate")

if __name__ == "__main__":
    run_command(COMMAND)
