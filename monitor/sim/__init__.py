"""DPRK in a box: a simulated Internet in network namespaces, for tests, the demo and benchmarks.

    from monitor.sim import World
    with World.build() as w:              # root; sweeps leftovers of dead runs first
        w.ping("vantage0", "198.18.176.1")
        w.blackout()
    with World.build(profile="realistic") as w:   # slow, lossy paths; realistic hosts
        w.congestion("unicom", duration=180)

Only addresses of 198.18.0.0/15 are used, inside namespaces with no link to the host's.
"""

from monitor.sim.netem import Burst, Episode, PathProfile
from monitor.sim.spec import WorldSpec, dprk, realistic, stand_in
from monitor.sim.world import FaultRecord, Flap, World, missing_tools, teardown_all, world

__all__ = [
    "Burst",
    "Episode",
    "FaultRecord",
    "Flap",
    "PathProfile",
    "World",
    "WorldSpec",
    "dprk",
    "missing_tools",
    "realistic",
    "stand_in",
    "teardown_all",
    "world",
]
