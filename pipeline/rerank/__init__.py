"""Re-ranking (seed: rl-rerank-generator-evaluator): evaluators, the generator, rewards, BP."""
