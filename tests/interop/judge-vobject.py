"""Python vobject reads each .ics file named on the command line and prints what it understood
as JSON lines. vobject builds each zone from the file's VTIMEZONE (it has no tz database of
its own for TZIDs), so its instants judge our VTIMEZONEs."""
import datetime as dt
import json
import sys

import vobject

UTC = dt.timezone.utc


def when(prop):
    value = prop.value
    if not isinstance(value, dt.datetime):
        return {"date": value.strftime("%Y%m%d")}
    if value.tzinfo is None:
        raise SystemExit(f"a floating time, or a TZID vobject could not resolve: {prop}")
    tzid = prop.params.get("TZID", [None])[0]
    return {"utc": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "tzid": tzid}


def main():
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8", newline="") as f:
            cal = vobject.readOne(f.read())
        events = []
        for ev in cal.contents.get("vevent", []):
            c = ev.contents
            events.append({
                "uid": ev.uid.value,
                "sequence": int(ev.sequence.value) if "sequence" in c else 0,
                "status": ev.status.value if "status" in c else None,
                "summary": ev.summary.value,
                "description": ev.description.value if "description" in c else "",
                "location": ev.location.value if "location" in c else None,
                "start": when(ev.dtstart),
                "end": when(ev.dtend),
                "organizer": ev.organizer.value.removeprefix("mailto:") if "organizer" in c else None,
                "attendees": [
                    {"email": a.value.removeprefix("mailto:"), "cn": a.params.get("CN", [None])[0],
                     "partstat": a.params.get("PARTSTAT", [None])[0], "rsvp": a.params.get("RSVP", [None])[0]}
                    for a in c.get("attendee", [])
                ],
                "url": ev.url.value if "url" in c else None,
            })
        zones = [z.tzid.value for z in cal.contents.get("vtimezone", [])]
        print(json.dumps({
            "file": path,
            "method": cal.method.value if "method" in cal.contents else None,
            "name": cal.contents["name"][0].value if "name" in cal.contents else None,
            "timezones": zones,
            "events": events,
        }, ensure_ascii=False))


main()
