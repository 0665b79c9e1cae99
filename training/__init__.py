"""Training pipeline: data loaders, models, INT8 export, deciders and early exits (`hi-train`)."""
