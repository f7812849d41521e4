//! Charts drawn on the server as SVG (plotters, which escapes every text it writes): a numeric
//! field of a topic's JSON values over time, one line per key, and a group's lag over time.
//! Series are bounded by the caller ([`MAX_SERIES`] lines, points as read).

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::render::{number_at, timestamp};

/// Most lines in one chart (the keys with most points win).
pub const MAX_SERIES: usize = 12;
const SIZE: (u32, u32) = (960, 420);

/// Points (ms since the epoch, value) of each named series.
pub type Series = BTreeMap<String, Vec<(i64, f64)>>;

/// Values larger than this are not parsed for a chart (counted as without a number).
pub const MAX_CHART_VALUE_BYTES: usize = 64 * 1024;

/// The finite number at `field` of a JSON value, if it is one and at most
/// [`MAX_CHART_VALUE_BYTES`] long.
pub fn number_in(bytes: &[u8], field: &str) -> Option<f64> {
    if bytes.len() > MAX_CHART_VALUE_BYTES {
        return None;
    }
    let value = serde_json::from_slice::<serde_json::Value>(bytes).ok()?;
    number_at(&value, field).filter(|n| n.is_finite())
}

/// Points (key text, timestamp, number if the value had one) as one series per key. Returns
/// the series and how many points had no number.
pub fn field_series(values: impl IntoIterator<Item = (String, i64, Option<f64>)>) -> (Series, u64) {
    let mut series = Series::new();
    let mut skipped = 0;
    for (key, ts, number) in values {
        match number {
            Some(n) => series.entry(key).or_default().push((ts, n)),
            None => skipped += 1,
        }
    }
    if series.len() > MAX_SERIES {
        let mut by_size: Vec<(String, Vec<(i64, f64)>)> = series.into_iter().collect();
        by_size.sort_by_key(|(_, points)| std::cmp::Reverse(points.len()));
        by_size.truncate(MAX_SERIES);
        series = by_size.into_iter().collect();
    }
    for points in series.values_mut() {
        points.sort_by_key(|(ts, _)| *ts);
    }
    (series, skipped)
}

/// Series with at most this many points also mark each point (a single sample shows).
const MARKED_POINTS: usize = 200;

/// A line chart of `series` as an SVG document; with `from_zero` the y axis starts at 0 (for
/// counts such as lag).
pub fn line_chart(
    title: &str,
    y_label: &str,
    series: &Series,
    from_zero: bool,
) -> Result<String, String> {
    let points = series.values().flatten();
    let (mut x0, mut x1) = (i64::MAX, i64::MIN);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in points {
        (x0, x1) = (x0.min(*x), x1.max(*x));
        (y0, y1) = (y0.min(*y), y1.max(*y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0, 1000, 0.0, 1.0);
    }
    if x1 - x0 < 1000 {
        x1 = x0 + 1000;
    }
    let pad = ((y1 - y0) * 0.05).max(0.5);
    let (y0, y1) = match from_zero {
        true => (0.0, y1.max(0.0) + pad),
        false => (y0 - pad, y1 + pad),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let failed = |e: &dyn std::fmt::Display| format!("drawing the chart: {e}");
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| failed(&e))?;
        let span = x1 - x0;
        let label = move |x: &i64| {
            let t = timestamp(*x);
            // Hours and minutes (and seconds for spans under an hour) of the RFC 3339 form.
            let time = t
                .get(11..if span < 3_600_000 { 19 } else { 16 })
                .unwrap_or(&t);
            time.to_owned()
        };
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&label)
            .x_desc("time (UTC)")
            .y_desc(y_label)
            .draw()
            .map_err(|e| failed(&e))?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| failed(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            if points.len() <= MARKED_POINTS {
                let marks = points.iter().map(|p| Circle::new(*p, 3, color.filled()));
                chart.draw_series(marks).map_err(|e| failed(&e))?;
            }
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| failed(&e))?;
        }
        root.present().map_err(|e| failed(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_split_by_key_and_sorted_by_time() {
        let values = [
            ("b".to_owned(), 20, br#"{"t":{"mean":2.5}}"#.as_slice()),
            ("a".to_owned(), 30, br#"{"t":{"mean":1}}"#.as_slice()),
            ("a".to_owned(), 10, br#"{"t":{"mean":3}}"#.as_slice()),
            ("a".to_owned(), 40, b"not json".as_slice()),
        ];
        let numbers = values.map(|(k, ts, v)| (k, ts, number_in(v, "t.mean")));
        let (series, skipped) = field_series(numbers);
        assert_eq!(skipped, 1);
        assert_eq!(series["a"], vec![(10, 3.0), (30, 1.0)]);
        assert_eq!(series["b"], vec![(20, 2.5)]);
    }

    #[test]
    fn labels_are_escaped_in_the_svg() {
        let mut series = Series::new();
        series.insert(
            "<script>alert(1)</script>".into(),
            vec![(0, 1.0), (5000, 2.0)],
        );
        let svg = line_chart("t", "v", &series, false).expect("chart");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }
}
