#!/usr/bin/env python3
"""Summarises bench/delivery.sh's results.jsonl as a Markdown table, with the SMTP ratio to
smtp-source and the issue's goals (outbox >= 1,000 messages/s; SMTP >= half of smtp-source)."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("| database | transport | messages | seconds | messages/s | worker peak RSS | duplicate window p50 / p99 / max | goal |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    db = r["run"].split("-")[0]
    if r["transport"] == "smtp-source":
        print(f"| {db} | smtp-source (yardstick) | {r['sent']:,} | {r['seconds']} | {r['per_second']:,} | — | — | — |")
        continue
    goal = ""
    if r["transport"] == "outbox":
        goal = "met (≥ 1,000/s)" if r["per_second"] >= 1000 else "not met (≥ 1,000/s)"
    else:
        ys = [y for y in rows if y["transport"] == "smtp-source" and y["run"].split("-")[0] == db]
        if ys:
            ratio = r["per_second"] / ys[0]["per_second"]
            goal = f"{ratio:.2f}× smtp-source: " + ("met (≥ 0.5×)" if ratio >= 0.5 else "not met (≥ 0.5×)")
    ms = lambda us: "—" if us is None else f"{us / 1000:.1f}"
    window = f"{ms(r.get('window_us_p50'))} / {ms(r.get('window_us_p99'))} / {ms(r.get('window_us_max'))} ms"
    print(f"| {db} | {r['transport']} | {r['sent']:,} of {r['due']:,} | {r['seconds']} (wall {r['wall_seconds']}) | {r['per_second']:,} | {r['worker_peak_rss_mib']} MiB | {window} | {goal} |")
