"""Python vobject reads each .ics file named on the command line and prints what it understood
as JSON lines.

vobject keeps one tzinfo per TZID for the whole process: the first VTIMEZONE it sees, or, if an
event's TZID is resolved first, pytz's zone of that name. Either way a file could be judged by
another file's VTIMEZONE or by pytz. So each file is read twice: once raw, to build a tzinfo
from each of its VTIMEZONEs (dateutil's tzical, which vobject uses), registered under its TZID;
then again, transformed, so every time is computed from this file's own VTIMEZONEs."""
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
    if type(value.tzinfo).__module__.startswith("pytz"):
        raise SystemExit(f"vobject took {prop} from pytz, not from the file's VTIMEZONE")
    tzid = prop.params.get("TZID", [None])[0]
    return {"utc": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "tzid": tzid}


def main():
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        raw = vobject.readOne(text, transform=False)
        for vtz in raw.contents.get("vtimezone", []):
            vobject.icalendar.registerTzid(vtz.tzid.value, vobject.icalendar.TimezoneComponent.gettzinfo(vtz))
        cal = vobject.readOne(text)
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
