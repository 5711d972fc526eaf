#!/usr/bin/env python3
"""Reads every message an SMTP server received (DIR/*.eml) with Python's email package and the
calendar inside with icalendar, and prints what a mail and calendar client would see, as JSON:
one object per message, sorted by file name (arrival order).

    read_mail.py DIR
"""
import glob
import json
import os
import sys
from email import policy
from email.parser import BytesParser

import icalendar


def calendar_facts(text):
    cal = icalendar.Calendar.from_ical(text)
    events = []
    for ev in cal.walk("VEVENT"):
        start = ev.decoded("DTSTART")
        events.append({
            "uid": str(ev.get("UID")),
            "sequence": int(ev.get("SEQUENCE", 0)),
            "status": str(ev.get("STATUS", "")),
            # Timed events as UTC instants, computed by icalendar from the TZID.
            "start_utc": start.astimezone(__import__("datetime").timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(start, "hour") else start.isoformat(),
            "attendees": [str(a) for a in (ev.get("ATTENDEE") if isinstance(ev.get("ATTENDEE"), list) else [ev.get("ATTENDEE")] if ev.get("ATTENDEE") else [])],
        })
    return {"method": str(cal.get("METHOD", "")), "events": events}


def facts(path):
    with open(path, "rb") as f:
        msg = BytesParser(policy=policy.default).parse(f)
    out = {
        "file": os.path.basename(path),
        "to": str(msg["To"]),
        "from": str(msg["From"]),
        "subject": str(msg["Subject"]),
        "message_id": str(msg["Message-ID"]),
        "parts": [],
        "text": "",
        "html": "",
        "calendar": None,
        "attachment": None,
    }
    for part in msg.walk():
        ctype = part.get_content_type()
        out["parts"].append(ctype)
        if ctype == "text/plain" and not out["text"]:
            out["text"] = part.get_content()
        elif ctype == "text/html" and not out["html"]:
            out["html"] = part.get_content()
        elif ctype == "text/calendar":
            body = part.get_content()
            out["calendar"] = calendar_facts(body)
            out["calendar"]["method_param"] = part.get_param("method")
            out["calendar"]["encoding"] = str(part.get("Content-Transfer-Encoding", ""))
        elif part.get_content_disposition() == "attachment":
            data = part.get_payload(decode=True)
            out["attachment"] = {"name": part.get_filename(), "type": ctype, "calendar": calendar_facts(data)}
    return out


def main():
    files = sorted(glob.glob(os.path.join(sys.argv[1], "*.eml")))
    json.dump([facts(f) for f in files], sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
