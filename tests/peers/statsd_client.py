# The `statsd` client from PyPI sending what applications send: counters,
# gauges (set and changed), a timer, a set, and a pipeline (several lines in
# one packet). Usage: statsd_client.py HOST PORT udp|tcp
import sys

import statsd

host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if proto == "udp":
    c = statsd.StatsClient(host, port, prefix="py")
else:
    c = statsd.TCPStatsClient(host, port, prefix="py")
c.incr("hits", 3)
c.decr("hits")
c.gauge("temp", 20)
c.gauge("temp", 5, delta=True)
c.timing("lat", 12.5)
c.set("users", "alice")
with c.pipeline() as p:
    for _ in range(5):
        p.incr("batched")
if proto == "tcp":
    c.close()
print("sent")
