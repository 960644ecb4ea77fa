"""``python -m ciliate.agent``: the agent process (``runtime.up`` spawns it by this name).

Must not import cli.
"""

from ciliate.agent.daemon import main

raise SystemExit(main())
