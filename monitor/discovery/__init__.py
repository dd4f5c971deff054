"""Discovery: a polite census of an entity's prefixes and Trinocular-style block sampling.

- `plan`: pure logic (what a census probes, E(b) and A(E(b)) per /24 after a census, what
  changed, how many and which addresses to sample per round). No I/O, tested with plain inputs.
- `store`: the census database (`<state_dir>/census.sqlite3`), so E(b) survives restarts.
- `census`: runs one census with the daemon's ICMP engine (and optionally TCP) inside the
  scheduler's background share of `max_rate`.
- `service`: the daemon's side: censuses at start and every `discovery.interval`, the sample
  picked per block and round, the status and metrics of the blocks.
"""
