// Mozilla ical.js (Thunderbird's parser) reads each .ics file named on the command line and
// prints what it understood as JSON lines. Each file's VTIMEZONEs, and only those, are
// registered: a TZID without its VTIMEZONE must show up as a wrong zone, not borrow another
// file's (ical.js#582: such times silently become UTC or floating).
import fs from 'node:fs';
import ICAL from 'ical.js';

function when(t, prop) {
  if (t.isDate) return { date: t.toString() };
  const tzid = prop.getParameter('tzid');
  const zone = t.zone ? t.zone.tzid : null;
  if (tzid && zone !== tzid) throw new Error(`TZID ${tzid} resolved to zone ${zone}: no VTIMEZONE for it`);
  if (!tzid && zone !== 'UTC') throw new Error(`a floating time: ${t.toString()}`);
  return { utc: t.toJSDate().toISOString().replace('.000Z', 'Z'), tzid: tzid || null };
}

for (const file of process.argv.slice(2)) {
  ICAL.TimezoneService.reset();
  const text = fs.readFileSync(file, 'utf8');
  const cal = new ICAL.Component(ICAL.parse(text));
  const zones = cal.getAllSubcomponents('vtimezone');
  for (const z of zones) ICAL.TimezoneService.register(z);
  const events = cal.getAllSubcomponents('vevent').map((v) => {
    const ev = new ICAL.Event(v);
    const attendees = v.getAllProperties('attendee').map((p) => ({
      email: String(p.getFirstValue()).replace(/^mailto:/i, ''),
      cn: p.getParameter('cn') || null,
      partstat: p.getParameter('partstat') || null,
      rsvp: p.getParameter('rsvp') || null,
    }));
    const org = v.getFirstProperty('organizer');
    return {
      uid: ev.uid,
      sequence: ev.sequence,
      status: v.getFirstPropertyValue('status'),
      summary: ev.summary,
      description: ev.description,
      location: ev.location || null,
      start: when(ev.startDate, v.getFirstProperty('dtstart')),
      end: when(ev.endDate, v.getFirstProperty('dtend')),
      organizer: org ? String(org.getFirstValue()).replace(/^mailto:/i, '') : null,
      attendees,
      url: v.getFirstPropertyValue('url') || null,
    };
  });
  console.log(JSON.stringify({
    file,
    method: cal.getFirstPropertyValue('method'),
    name: cal.getFirstPropertyValue('name') || null,
    timezones: zones.map((z) => z.getFirstPropertyValue('tzid')),
    events,
  }));
}
