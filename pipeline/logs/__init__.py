"""Session logs: the data contract, validation and Ray Data ingestion into trajectories."""
