//! The load client of `bench/load.sh`: creates patients, then itineraries from many concurrent
//! clients, then fetches feeds as fast as it can, then does both at once (as when coordinators
//! book while patients' calendar apps poll); prints throughput and latency percentiles as JSON
//! lines. Needs a running `itinerary serve` and a coordinator token.
//!
//! cargo run --release --example load -- BASE_URL TOKEN [ITINERARIES] [CONCURRENCY] [FEED_SECONDS]
//!
//! BASE_URL may list several services, separated by commas (`bench/scale.sh`): the clients take
//! them in turn (client `c` talks to service `c % N`), as a round-robin balancer would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{Datelike, Utc};
use serde_json::{Value, json};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Kuala Lumpur's public holidays (`config/holidays.csv`, read from the working directory, the
/// repository's root as `bench/*.sh` run it): the load's trips keep clear of them, so that every
/// booking can be made and the figures are of bookings, not of refusals.
static KL_HOLIDAYS: std::sync::LazyLock<std::collections::BTreeSet<chrono::NaiveDate>> = std::sync::LazyLock::new(|| {
    std::fs::read_to_string("config/holidays.csv")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(",MY,KUL,"))
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect()
});

/// The Mondays of the first `count` weeks from a year ahead whose Tuesday to Saturday (the days
/// in Kuala Lumpur) hold no holiday there: found once, before the clock starts (the clients'
/// CPU is the service's too).
fn clear_weeks(count: usize) -> Vec<chrono::NaiveDate> {
    let today = Utc::now().date_naive();
    let first = today + chrono::Duration::days(365 - i64::from(today.weekday().num_days_from_monday()) - 1);
    std::iter::successors(Some(first), |d| Some(*d + chrono::Duration::days(7)))
        .filter(|d| (1..=5).all(|n| !KL_HOLIDAYS.contains(&(*d + chrono::Duration::days(n)))))
        .take(count)
        .collect()
}

/// A single infusion for patient `pid` in the week of Monday `d`: Monday night out on the
/// red-eye, back Friday night. Spread over weeks so the clinic does not simply fill up.
fn request(pid: i64, d: chrono::NaiveDate) -> Value {
    let f = |n: i64| (d + chrono::Duration::days(n)).format("%Y-%m-%d").to_string();
    json!({ "patient_id": pid, "protocol": "single-infusion", "trips": [{
        "outbound": { "flight": "MH71", "from": "NRT", "depart": format!("{} 21:40", f(0)), "to": "KUL", "arrive": format!("{} 04:30", f(1)) },
        "return": { "flight": "MH88", "from": "KUL", "depart": format!("{} 23:35", f(4)), "to": "NRT", "arrive": format!("{} 07:15", f(5)) } }] })
}

/// What one phase's clients saw: each request's latency and status.
type Seen = Vec<(f64, u16)>;

/// When a phase began: the wall clock, and the machine's busy CPU time then.
struct Started {
    at: Instant,
    busy_ms: Option<f64>,
}

impl Started {
    fn now() -> Self {
        Self { at: Instant::now(), busy_ms: busy_ms() }
    }
}

/// CPU time every core of the machine has spent busy since boot (Linux's /proc/stat, in its
/// USER_HZ of 100 per second): what service, database and this client cost together. Bookings
/// per second drift ±15 % between runs on a shared 2-core machine; the CPU cost of one booking
/// is the steadier figure to compare changes by.
fn busy_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<f64> = stat.lines().next()?.split_whitespace().skip(1).map(|n| n.parse().unwrap_or(0.0)).collect();
    // user nice system idle iowait irq softirq: all but idle and iowait (and steal, the time the
    // host gave other guests).
    let busy = cpu.iter().take(7).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, n)| n).sum::<f64>();
    Some(busy * 10.0)
}

/// Prints one phase's throughput (all answers, and 2xx only), latency percentiles, and, for a
/// phase that ran `alone`, the machine's CPU time per request.
fn summarize(what: &str, started: &Started, seen: Vec<Seen>, concurrency: usize, alone: bool) {
    let secs = started.at.elapsed().as_secs_f64();
    let busy_ms = busy_ms().zip(started.busy_ms).filter(|_| alone).map(|(now, then)| now - then);
    let mut lat = Vec::new();
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for (l, st) in seen.into_iter().flatten() {
        lat.push(l);
        *by_status.entry(st).or_default() += 1;
    }
    // What the goal counts: requests answered 2xx, not refusals.
    let ok: usize = by_status.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum();
    lat.sort_by(f64::total_cmp);
    let v = json!({
        "what": what, "requests": lat.len(), "seconds": (secs * 1000.0).round() / 1000.0,
        "per_second": (lat.len() as f64 / secs).round(),
        "ok_per_second": (ok as f64 / secs).round(),
        "p50_ms": (percentile(&lat, 0.50) * 1e5).round() / 100.0,
        "p99_ms": (percentile(&lat, 0.99) * 1e5).round() / 100.0,
        "max_ms": (percentile(&lat, 1.0) * 1e5).round() / 100.0,
        "concurrency": concurrency, "status": by_status,
        "cpu_ms_per_request": busy_ms.map(|ms| (ms / lat.len().max(1) as f64 * 100.0).round() / 100.0),
    });
    println!("{v}");
}

/// `concurrency` clients book an itinerary for each of `pids`, taking the next patient until
/// all are done. The `i`th of `pids` travels in week `(first + i) / 3`.
async fn book(
    http: &reqwest::Client,
    bases: &Arc<Vec<String>>,
    token: &Arc<String>,
    pids: Vec<i64>,
    first: usize,
    weeks: &Arc<Vec<chrono::NaiveDate>>,
    concurrency: usize,
) -> Vec<Seen> {
    let pids = Arc::new(pids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (http, base, token, pids, next, weeks) =
            (http.clone(), bases[c % bases.len()].clone(), token.clone(), pids.clone(), next.clone(), weeks.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pids.len() {
                    return out;
                }
                // Three patients a week: what the sample rota's early escorts can meet.
                let body = request(pids[i], weeks[(first + i) / 3]);
                let t = Instant::now();
                let r = http.post(format!("{base}/itineraries")).bearer_auth(&*token).json(&body).send().await.unwrap();
                let status = r.status().as_u16();
                let answer = r.bytes().await;
                out.push((t.elapsed().as_secs_f64(), status));
                // A refusal is a finding, not just a count: say what the service answered.
                if !(200..300).contains(&status) {
                    eprintln!("booking {i} answered {status}: {}", String::from_utf8_lossy(&answer.unwrap_or_default()));
                }
            }
        }));
    }
    joined(tasks).await
}

/// `concurrency` clients fetch `feeds` round-robin until `done` says stop.
fn poll_feeds(
    http: &reqwest::Client,
    feeds: &Arc<Vec<String>>,
    concurrency: usize,
    done: Arc<dyn Fn() -> bool + Send + Sync>,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    (0..concurrency)
        .map(|c| {
            let (http, feeds, done) = (http.clone(), feeds.clone(), done.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut i = c;
                while !done() {
                    let t = Instant::now();
                    let r = http.get(&feeds[i % feeds.len()]).send().await.unwrap();
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    out.push((t.elapsed().as_secs_f64(), status));
                    i += concurrency;
                }
                out
            })
        })
        .collect()
}

async fn joined(tasks: Vec<tokio::task::JoinHandle<Seen>>) -> Vec<Seen> {
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    seen
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bases: Arc<Vec<String>> = Arc::new(args[0].split(',').map(|b| b.trim_end_matches('/').to_owned()).collect());
    let token = Arc::new(args[1].clone());
    let n: usize = args.get(2).map_or(2000, |s| s.parse().unwrap());
    let concurrency: usize = args.get(3).map_or(16, |s| s.parse().unwrap());
    let feed_seconds: u64 = args.get(4).map_or(10, |s| s.parse().unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency * 4).build().unwrap();

    // Patients (not timed): one per itinerary, `n` for the first phase and `n / 2` for the mixed
    // one, with a passport valid a year past the last trip (week (n + n / 2) / 3 from a year
    // ahead: 20 years out at 2,000 itineraries), so that no booking is refused by the six-month
    // rule.
    // Plus the weeks skipped for holidays: at most every week of the table's years.
    let weeks = ((n + n / 2) / 3) as i64 + 52 * 6;
    let expiry = (Utc::now().date_naive() + chrono::Duration::days(365 + 7 * weeks + 365)).format("%Y-%m-%d").to_string();
    let mut pids = Vec::with_capacity(n + n / 2);
    for i in 0..n + n / 2 {
        let p = json!({ "name": format!("Load {i}"), "email": format!("load{i}@example.jp"), "birth_date": "1980-01-01", "passport_expiry": expiry });
        let base = &bases[i % bases.len()];
        let r: Value = http.post(format!("{base}/patients")).bearer_auth(&*token).json(&p).send().await.unwrap().json().await.unwrap();
        pids.push(r["id"].as_i64().unwrap());
    }
    let later = pids.split_off(n);
    let clear = Arc::new(clear_weeks((n + n / 2).div_ceil(3)));

    // Itineraries alone.
    let started = Started::now();
    let seen = book(&http, &bases, &token, pids.clone(), 0, &clear, concurrency).await;
    summarize("create itinerary", &started, seen, concurrency, true);

    // Feeds alone: one URL per patient with an itinerary, fetched round-robin for `feed_seconds`.
    let mut feeds = Vec::new();
    for (i, &pid) in pids.iter().take(200).enumerate() {
        let base = &bases[i % bases.len()];
        let r: Value = http.post(format!("{base}/patients/{pid}/feed")).bearer_auth(&*token).send().await.unwrap().json().await.unwrap();
        let url = r["feed_url"].as_str().unwrap();
        feeds.push(format!("{base}/feed/{}", url.rsplit('/').next().unwrap()));
    }
    let feeds = Arc::new(feeds);
    let deadline = Instant::now() + Duration::from_secs(feed_seconds);
    let started = Started::now();
    let seen = joined(poll_feeds(&http, &feeds, concurrency, Arc::new(move || Instant::now() >= deadline))).await;
    summarize("fetch feed", &started, seen, concurrency, true);

    // Both at once: `concurrency` clients book the other `n / 2` patients while as many poll
    // feeds, until the bookings are done.
    let done = Arc::new(AtomicBool::new(false));
    let started = Started::now();
    let polling = poll_feeds(
        &http,
        &feeds,
        concurrency,
        Arc::new({
            let done = done.clone();
            move || done.load(Ordering::Relaxed)
        }),
    );
    let seen = book(&http, &bases, &token, later, n, &clear, concurrency).await;
    done.store(true, Ordering::Relaxed);
    summarize("create itinerary, while feeds are fetched", &started, seen, concurrency, false);
    summarize("fetch feed, while itineraries are created", &started, joined(polling).await, concurrency, false);
}
