"""Device-side hierarchical inference (HI) runtime.

The one Python home of the offload protocol, the offload decider, the early-exit policy and the model
backends; the agent, the edge server, the measurements and (through shared test vectors) the C firmware
all build on these modules.
"""

__version__ = "0.1.0"
