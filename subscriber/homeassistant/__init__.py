"""Home Assistant MQTT discovery: every node a device, its figures entities, with no YAML.

The control plane publishes retained discovery configs whose value templates read the agents' own
topics, so Home Assistant subscribes to what the Pis already send: no metric is republished.
``catalog`` says which entities exist, ``discovery`` lays them out as configs and reads ours back,
``reconcile`` decides what to publish or remove, ``service`` talks to the broker.
"""
