"""Edge offload server (`hi-server`): runs the large model for samples that devices offload."""
