"""The command-line side: harnesses that run agents (robustness grids, sweeps) for ``maxent``'s
subcommands. It sits above the agents and may import them; the layer (the rest of ``maxent``)
never imports this package."""
