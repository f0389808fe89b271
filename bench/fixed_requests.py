"""Sends N GET requests to URL on one keep-alive connection, one at a
time, and checks every answer is a 200 (bench/gateway.sh, callgrind mode).

    python3 bench/fixed_requests.py URL N ["Name: value"]
"""

import http.client
import sys
import urllib.parse

url, count = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
headers = {}
if len(sys.argv) > 3:
    name, value = sys.argv[3].split(":", 1)
    headers[name.strip()] = value.strip()
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
for i in range(count):
    conn.request("GET", url.path or "/", headers=headers)
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"request {i}: HTTP {response.status}")
print(f"{count} requests, all 200")
