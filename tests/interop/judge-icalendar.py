"""Python icalendar 7 reads each .ics file named on the command line and prints what it
understood as JSON lines. Every zoned time is computed twice: with the zone icalendar looks up by
TZID (its own tz database), and with the VTIMEZONE in the file (Timezone.to_tz with
lookup_tzid=False), so a wrong VTIMEZONE cannot hide behind a right TZID."""
import datetime as dt
import json
import sys

import icalendar
from icalendar.timezone import tzp

UTC = dt.timezone.utc


def iso(t):
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def when(prop, vtz):
    value = prop.dt
    if not isinstance(value, dt.datetime):
        return {"date": value.strftime("%Y%m%d")}
    tzid = prop.params.get("TZID")
    if value.tzinfo is None:
        raise SystemExit(f"a floating time: {value}")
    out = {"utc": iso(value), "tzid": tzid}
    if tzid:
        if tzid not in vtz:
            raise SystemExit(f"TZID {tzid} has no VTIMEZONE in the file")
        out["utc_from_vtimezone"] = iso(tzp.localize(value.replace(tzinfo=None), vtz[tzid]))
    return out


def main():
    for path in sys.argv[1:]:
        with open(path, "rb") as f:
            cal = icalendar.Calendar.from_ical(f.read())
        vtz = {str(z["TZID"]): z.to_tz(lookup_tzid=False) for z in cal.walk("VTIMEZONE")}
        events = []
        for ev in cal.walk("VEVENT"):
            attendees = ev.get("ATTENDEE", [])
            if not isinstance(attendees, list):
                attendees = [attendees]
            events.append({
                "uid": str(ev["UID"]),
                "sequence": int(ev.get("SEQUENCE", 0)),
                "status": str(ev.get("STATUS", "")) or None,
                "summary": str(ev.get("SUMMARY", "")),
                "description": str(ev.get("DESCRIPTION", "")),
                "location": str(ev["LOCATION"]) if "LOCATION" in ev else None,
                "start": when(ev["DTSTART"], vtz),
                "end": when(ev["DTEND"], vtz),
                "organizer": str(ev.get("ORGANIZER", "")).removeprefix("mailto:") or None,
                "attendees": [
                    {"email": str(a).removeprefix("mailto:"), "cn": a.params.get("CN"),
                     "partstat": a.params.get("PARTSTAT"), "rsvp": a.params.get("RSVP")}
                    for a in attendees
                ],
                "url": str(ev["URL"]) if "URL" in ev else None,
            })
        print(json.dumps({
            "file": path,
            "method": str(cal.get("METHOD", "")) or None,
            "name": str(cal["NAME"]) if "NAME" in cal else None,
            "timezones": list(vtz),
            "events": events,
        }, ensure_ascii=False))


main()
