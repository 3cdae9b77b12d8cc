"""A bounded local HTTP load: GET http://127.0.0.1:PORT/ over one keep-alive
connection, as fast as the server answers, for at most SECONDS (the test
that starts it also kills it).  Prints "ready" after the first answer."""
import http.client
import sys
import time


def main() -> None:
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    end = time.monotonic() + seconds
    first = True
    while time.monotonic() < end:
        conn.request("GET", "/")
        conn.getresponse().read()
        if first:
            print("ready", flush=True)
            first = False


if __name__ == "__main__":
    main()
