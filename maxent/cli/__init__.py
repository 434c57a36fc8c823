"""The command line, above the agents: ``maxent train`` for every registered algorithm, ``eval``,
``export``, ``robustness`` and ``sweep``, generated from the agents' config dataclasses."""


def __getattr__(name: str):
    if name == "main":  # the console script's entry point, loaded only when asked for
        from maxent.cli.main import main

        return main
    raise AttributeError(f"module 'maxent.cli' has no attribute {name!r}")
