"""Per learner, the smallest RLlib `.training()` settings that still run a real update."""

TINY = {
    "ppo": {"train_batch_size_per_learner": 128, "minibatch_size": 64, "num_epochs": 1},
    "trpo": {"train_batch_size_per_learner": 128, "vf_minibatch_size": 64, "vf_epochs": 1},
    "ddpg": {
        "train_batch_size_per_learner": 32,
        "num_steps_sampled_before_learning_starts": 64,
    },
}
