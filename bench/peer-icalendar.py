"""Python icalendar 7 renders the events of events.json (written by the `race` example) as one
calendar with a VTIMEZONE per zone (add_missing_timezones), the same properties ours has.
Prints one JSON line of timings; writes the last output to OUT.

python peer-icalendar.py EVENTS_JSON OUT [RUNS]"""
import datetime as dt
import json
import sys
import time
from zoneinfo import ZoneInfo

import icalendar


def when(v):
    if "date" in v:
        return dt.date.fromisoformat(v["date"])
    return dt.datetime.fromisoformat(v["local"]).replace(tzinfo=ZoneInfo(v["tzid"]))


def render(meta):
    cal = icalendar.Calendar()
    cal.add("prodid", "-//KL Regenerative Clinic//peer python icalendar//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("name", meta["name"])
    cal.add("x-wr-calname", meta["name"])
    stamp = dt.datetime.fromisoformat(meta["dtstamp"].replace("Z", "+00:00"))
    org = meta["organizer"]
    for e in meta["events"]:
        ev = icalendar.Event()
        ev.add("uid", e["uid"])
        ev.add("dtstamp", stamp)
        ev.add("sequence", e["sequence"])
        ev.add("dtstart", when(e["start"]))
        ev.add("dtend", when(e["end"]))
        ev.add("summary", e["summary"], parameters={"LANGUAGE": "ja"})
        ev.add("description", e["description"], parameters={"LANGUAGE": "ja"})
        if e["location"]:
            ev.add("location", e["location"])
        ev.add("status", "CONFIRMED")
        if e["transparent"]:
            ev.add("transp", "TRANSPARENT")
        ev.add("class", "PRIVATE")
        if e["url"]:
            ev.add("url", e["url"])
        organizer = icalendar.vCalAddress("mailto:" + org["email"])
        organizer.params["CN"] = org["name"]
        ev.add("organizer", organizer)
        cal.add_component(ev)
    cal.add_missing_timezones()
    return cal.to_ical()


def main():
    path, out = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        data = render(meta)
        times.append(time.perf_counter() - t)
    with open(out, "wb") as f:
        f.write(data)
    print(json.dumps({"peer": f"python-icalendar {icalendar.__version__}", "events": len(meta["events"]),
                      "first_s": times[0], "median_s": sorted(times)[len(times) // 2], "runs": runs, "bytes": len(data)}))


main()
