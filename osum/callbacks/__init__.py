"""Lightning callbacks and plugins for training through faults: atomic checkpoints, RNG state, preemption."""
