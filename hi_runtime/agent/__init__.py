"""hi-agent: the device-side application (Raspberry Pi, Jetson, a gateway for microcontrollers).

It builds on the core (``hi_runtime``: protocol, decider, early-exit policy, records, model runners) and
adds what only a device needs: input sources, the strategy loop with pipelined offloads, the resilient
offloader, the serial bridge to microcontrollers, the BLE gateway and the offline demo. Nothing outside
``measurements`` imports it, so the edge server and the training tools never carry the agent.
"""
