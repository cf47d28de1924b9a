# splunk-handler (PyPI): Python's logging sending to HEC, as applications
# configure it. Usage: hec_client.py HOST PORT TOKEN
import logging
import sys

from splunk_handler import SplunkHandler

host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
handler = SplunkHandler(
    host=host, port=port, token=token, index="main", protocol="http",
    source="billing", sourcetype="pylog", hostname="py-1",
    flush_interval=0, force_keep_ahead=True, retry_count=0, debug=False,
)
log = logging.getLogger("billing")
log.setLevel(logging.INFO)
log.addHandler(handler)
for i in range(3):
    log.warning("invoice %d failed", i)
handler.close()
print("sent")
