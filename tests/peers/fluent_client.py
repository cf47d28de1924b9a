# fluent-logger (PyPI): Python's Fluent client (Message mode, EventTime with
# nanoseconds). Usage: fluent_client.py HOST PORT
import sys

from fluent import sender

host, port = sys.argv[1], int(sys.argv[2])
logger = sender.FluentSender("py", host=host, port=port, nanosecond_precision=True)
for i in range(3):
    if not logger.emit("login", {"user": "alice", "n": i}):
        print("emit failed:", logger.last_error, file=sys.stderr)
        sys.exit(1)
logger.close()
print("sent")
