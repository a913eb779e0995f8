"""Loopback fakes and harnesses shared by the tests, the benches (bench/) and demos: a TwelveData/FRED
server on 127.0.0.1, a realtime replay on an accelerated clock, the simple trading rules the synthetic
market is checked against. The platform itself never imports this package."""
