"""Detection: pure logic without I/O (hysteresis, /24 block belief, fusion into entity state)."""
