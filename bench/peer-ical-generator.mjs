// ical-generator renders the events of events.json (written by the `race` example) as one
// calendar with a VTIMEZONE per zone (@touch4it/ical-timezones as its generator, as its README
// shows), the same properties ours has. Zoned times are luxon DateTimes, as its documentation
// asks: given a plain Date and a zone it writes the process's local wall time under that TZID.
// One zone per event (its start's); an end in another zone is converted to it. Prints one JSON
// line of timings; writes the last output.
//
// node peer-ical-generator.mjs EVENTS_JSON OUT [RUNS]
import fs from 'node:fs';
import { createRequire } from 'node:module';

// The packages live with the interop parsers (scripts/interop-setup installs them there).
const require = createRequire(new URL('../tests/interop/package.json', import.meta.url));
const icalGenerator = require('ical-generator');
const ical = icalGenerator.default;
const { ICalCalendarMethod, ICalEventStatus, ICalEventTransparency, ICalEventClass } = icalGenerator;
const { getVtimezoneComponent } = require('@touch4it/ical-timezones');
const { DateTime } = require('luxon');
const pkg = JSON.parse(fs.readFileSync(new URL('../tests/interop/node_modules/ical-generator/package.json', import.meta.url), 'utf8'));

const [path, out, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 5);
const meta = JSON.parse(fs.readFileSync(path, 'utf8'));

function render() {
  const cal = ical({
    prodId: '-//KL Regenerative Clinic//peer ical-generator//EN',
    method: ICalCalendarMethod.PUBLISH,
    name: meta.name,
    timezone: { name: null, generator: getVtimezoneComponent },
  });
  const stamp = new Date(meta.dtstamp);
  for (const e of meta.events) {
    const allDay = 'date' in e.start;
    const ev = cal.createEvent({
      id: e.uid,
      stamp,
      sequence: e.sequence,
      start: allDay ? e.start.date : DateTime.fromISO(e.start.local, { zone: e.start.tzid }),
      end: allDay ? e.end.date : DateTime.fromISO(e.end.local, { zone: e.end.tzid }),
      allDay,
      timezone: allDay ? null : e.start.tzid,
      summary: e.summary,
      description: e.description,
      location: e.location,
      status: ICalEventStatus.CONFIRMED,
      transparency: e.transparent ? ICalEventTransparency.TRANSPARENT : ICalEventTransparency.OPAQUE,
      class: ICalEventClass.PRIVATE,
      url: e.url,
      organizer: { name: meta.organizer.name, email: meta.organizer.email },
    });
    void ev;
  }
  return cal.toString();
}

const times = [];
let text = '';
for (let i = 0; i < runs; i++) {
  const t = process.hrtime.bigint();
  text = render();
  times.push(Number(process.hrtime.bigint() - t) / 1e9);
}
fs.writeFileSync(out, text);
const sorted = [...times].sort((a, b) => a - b);
console.log(JSON.stringify({ peer: `ical-generator ${pkg.version}`, events: meta.events.length, first_s: times[0],
  median_s: sorted[Math.floor(sorted.length / 2)], runs, bytes: Buffer.byteLength(text) }));
