"""The planner's exemplars: question → plan pairs (`plans.yaml`), loaded by `agent.exemplar_library`."""
