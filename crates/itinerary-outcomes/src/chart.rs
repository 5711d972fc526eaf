//! A patient's measures over time as one SVG: a panel per measure, each answer a point, the
//! infusions as vertical lines. Drawn with plotters; text is left to the browser's fonts.

use chrono::{DateTime, Duration, Utc};
use plotters::prelude::*;

use crate::Occasion;
use crate::questionnaire::Measure;

/// The chart's size in CSS pixels: four panels stacked, readable on a laptop beside a call.
pub const WIDTH: u32 = 720;
pub const HEIGHT: u32 = 880;
/// The answers' colour, and the infusions'.
const POINT: RGBColor = RGBColor(0x1f, 0x5f, 0xa8);
const INFUSION: RGBColor = RGBColor(0xc0, 0x39, 0x2b);

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("nothing to chart: no answer and no infusion")]
    Empty,
    #[error("drawing the chart: {0}")]
    Drawing(String),
}

/// The chart of `occasions` (any order) with `infusions` marked; labels in English or Japanese.
pub fn chart(occasions: &[Occasion], infusions: &[DateTime<Utc>], english: bool) -> Result<String, ChartError> {
    let answered: Vec<&Occasion> = occasions.iter().filter(|o| o.answered()).collect();
    let times = answered.iter().map(|o| o.at).chain(infusions.iter().copied());
    let (Some(first), Some(last)) = (times.clone().min(), times.max()) else { return Err(ChartError::Empty) };
    // A week either side, so that no point sits on the frame.
    let (from, to) = (first - Duration::days(7), last + Duration::days(7));
    let mut svg = String::new();
    let draw = |e: &dyn std::fmt::Display| ChartError::Drawing(e.to_string());
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw(&e))?;
        let panels = root.split_evenly((Measure::ALL.len(), 1));
        for (panel, m) in panels.iter().zip(Measure::ALL) {
            let (lo, hi) = m.range();
            let (lo, hi) = (f64::from(lo), f64::from(hi));
            let mut c = ChartBuilder::on(panel)
                .caption(m.label(english), ("sans-serif", 15))
                .margin(10)
                .x_label_area_size(22)
                .y_label_area_size(34)
                .build_cartesian_2d(from..to, lo..hi)
                .map_err(|e| draw(&e))?;
            let span_days = (to - from).num_days();
            c.configure_mesh()
                .x_labels(6)
                .y_labels((hi - lo) as usize + 1)
                .x_label_formatter(&|d: &DateTime<Utc>| if span_days > 400 { d.format("%Y-%m") } else { d.format("%m/%d") }.to_string())
                .y_label_formatter(&|v: &f64| format!("{v:.0}"))
                .light_line_style(WHITE)
                .draw()
                .map_err(|e| draw(&e))?;
            for at in infusions {
                c.draw_series(LineSeries::new([(*at, lo), (*at, hi)], INFUSION.stroke_width(1))).map_err(|e| draw(&e))?;
            }
            let mut points: Vec<(DateTime<Utc>, f64)> =
                answered.iter().filter_map(|o| m.of(&o.answers).map(|v| (o.at, f64::from(v)))).collect();
            points.sort_by_key(|p| p.0);
            c.draw_series(LineSeries::new(points.iter().copied(), POINT.stroke_width(2))).map_err(|e| draw(&e))?;
            c.draw_series(points.iter().map(|p| Circle::new(*p, 4, POINT.filled()))).map_err(|e| draw(&e))?;
        }
        root.present().map_err(|e| draw(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;

    use super::*;
    use crate::{Answers, OccasionKind};

    fn occasion(day: u32, month: u32, year: i32, fields: &[(&str, &str)]) -> Occasion {
        let at = Utc.with_ymd_and_hms(year, month, day, 1, 0, 0).unwrap();
        Occasion {
            itinerary_id: 1,
            reference: "IT".into(),
            set: 1,
            key: format!("k{year}{month}{day}"),
            kind: OccasionKind::FollowUp,
            at,
            zone: chrono_tz::Asia::Tokyo,
            answers: Answers::from_fields(fields.iter().copied()).unwrap(),
            answered_at: Some(at),
            updated_at: None,
        }
    }

    /// The centres of the answers' points, by panel (top to bottom).
    fn points(svg: &str) -> Vec<Vec<(f64, f64)>> {
        let re = regex::Regex::new(r##"<circle cx="([\d.]+)" cy="([\d.]+)" r="4" opacity="1" fill="#1F5FA8""##).unwrap();
        let mut panels = vec![Vec::new(); 4];
        for c in re.captures_iter(svg) {
            let (x, y): (f64, f64) = (c[1].parse().unwrap(), c[2].parse().unwrap());
            panels[(y / (f64::from(HEIGHT) / 4.0)) as usize].push((x, y));
        }
        panels
    }

    #[test]
    fn each_answer_is_a_point_where_its_day_and_value_say() {
        // Baseline, 1, 3 and 6 months: itch 8, 5, 3, 2; the 3-month sleep not answered.
        let series = [
            occasion(1, 4, 2027, &[("itch", "8"), ("sleep", "6"), ("steroid_days", "7"), ("impression", "4")]),
            occasion(15, 5, 2027, &[("itch", "5"), ("sleep", "4"), ("steroid_days", "5"), ("impression", "3")]),
            occasion(15, 7, 2027, &[("itch", "3"), ("steroid_days", "2"), ("impression", "2")]),
            occasion(15, 10, 2027, &[("itch", "2"), ("sleep", "0"), ("steroid_days", "0"), ("impression", "1")]),
        ];
        let infusions = [Utc.with_ymd_and_hms(2027, 4, 5, 2, 0, 0).unwrap(), Utc.with_ymd_and_hms(2027, 4, 19, 2, 0, 0).unwrap()];
        let svg = chart(&series, &infusions, true).unwrap();
        let panels = points(&svg);
        let counts: Vec<usize> = panels.iter().map(Vec::len).collect();
        assert_eq!(counts, [4, 3, 4, 4], "one point per answer in each panel");
        // Within a panel, x follows the days and y the values, both linearly.
        let days: Vec<f64> = series.iter().map(|o| (o.at - series[0].at).num_hours() as f64 / 24.0).collect();
        let itch = &panels[0];
        let per_day = (itch[3].0 - itch[0].0) / days[3];
        assert!(per_day > 0.0);
        for (p, d) in itch.iter().zip(&days) {
            assert!((p.0 - (itch[0].0 + per_day * d)).abs() < 1.0, "x of the point on day {d}: {}", p.0);
        }
        let values = [8.0, 5.0, 3.0, 2.0];
        let per_point = (itch[3].1 - itch[0].1) / (values[3] - values[0]);
        assert!(per_point < 0.0, "higher values are drawn higher");
        for (p, v) in itch.iter().zip(values) {
            assert!((p.1 - (itch[0].1 + per_point * (v - values[0]))).abs() < 1.0, "y of the value {v}: {}", p.1);
        }
        // Sleep skips the 3-month answer: its points are on days 0, 1 and 3 of the series.
        let sleep_x: Vec<f64> = panels[1].iter().map(|p| p.0).collect();
        assert!((sleep_x[2] - itch[3].0).abs() < 1.0 && (sleep_x[1] - itch[1].0).abs() < 1.0);
        // The infusions: a vertical line per panel at each infusion's day.
        let marks = svg.matches("stroke=\"#C0392B\"").count();
        assert_eq!(marks, 2 * 4, "two infusions marked in four panels");
        let inf_x = itch[0].0 + per_day * ((infusions[0] - series[0].at).num_hours() as f64 / 24.0);
        let line = regex::Regex::new(r##"<polyline fill="none" opacity="1" stroke="#C0392B" stroke-width="1" points="([\d.]+),"##).unwrap();
        let first = line.captures(&svg).unwrap()[1].parse::<f64>().unwrap();
        assert!((first - inf_x).abs() < 1.5, "the first infusion's line at x {first}, expected {inf_x}");
        assert!(svg.contains("Worst itch (0–10)"));
    }

    #[test]
    fn nothing_to_chart_is_said() {
        assert!(matches!(chart(&[], &[], false), Err(ChartError::Empty)));
    }
}
