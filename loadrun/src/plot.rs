//! An SVG plot of a load run's timeline: throughput, p99
//! append-to-durable latency, resident memory and how far the indexes lag
//! (events in sealed segments not yet indexed) over time, one panel each. Plain SVG written by hand (no plotting dependency to build).

use super::ingest::Sample;

const W: f64 = 900.0;
const PANEL_H: f64 = 200.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis top at or above `v`.
fn nice_top(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn panel(out: &mut String, y0: f64, title: &str, unit: &str, xs: &[f64], ys: &[f64], color: &str) {
    let plot_w = W - LEFT - RIGHT;
    let xmax = xs.iter().cloned().fold(0.0, f64::max).max(1e-9);
    let ytop = nice_top(ys.iter().cloned().fold(0.0, f64::max));
    out.push_str(&format!(
        "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        y0 - 8.0,
        esc(title)
    ));
    out.push_str(&format!(
        "<rect x=\"{LEFT}\" y=\"{y0:.1}\" width=\"{plot_w:.1}\" height=\"{PANEL_H}\" fill=\"none\" stroke=\"#888\"/>\n"
    ));
    for k in 0..=4 {
        let v = ytop * k as f64 / 4.0;
        let y = y0 + PANEL_H - PANEL_H * k as f64 / 4.0;
        out.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n",
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            fmt_val(v)
        ));
    }
    for k in 0..=5 {
        let t = xmax * k as f64 / 5.0;
        let x = LEFT + plot_w * k as f64 / 5.0;
        out.push_str(&format!(
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{t:.1} s</text>\n",
            y0 + PANEL_H + 16.0
        ));
    }
    out.push_str(&format!(
        "<text x=\"14\" y=\"{:.1}\" font-size=\"11\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>\n",
        y0 + PANEL_H / 2.0,
        y0 + PANEL_H / 2.0,
        esc(unit)
    ));
    let pts: Vec<String> = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| {
            format!(
                "{:.1},{:.1}",
                LEFT + plot_w * x / xmax,
                y0 + PANEL_H - PANEL_H * (y / ytop).clamp(0.0, 1.0)
            )
        })
        .collect();
    out.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
        pts.join(" ")
    ));
}

/// An axis label: three significant digits with a k or M suffix, trailing
/// zeros dropped (the quarter ticks of 2,000 read 500, 1k, 1.5k, 2k; with
/// whole thousands only, 1.5k and 2k both read "2k").
fn fmt_val(v: f64) -> String {
    let (scaled, unit) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else if v >= 10.0 {
        (v, "")
    } else {
        return format!("{v:.2}");
    };
    let decimals = if scaled >= 100.0 {
        0
    } else if scaled >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{scaled:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{unit}")
}

/// The SVG text of a timeline plot; `seal_lag`: per sealed segment, its
/// seal (seconds into the phase) and its seal-to-index time (ms), drawn as
/// a fifth panel when there are any (the sustained mode).
pub fn svg(title: &str, samples: &[Sample], seal_lag: &[(f64, f64)]) -> String {
    let panels = if seal_lag.is_empty() { 4.0 } else { 5.0 };
    let h = TOP + panels * (PANEL_H + GAP);
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{LEFT}\" y=\"20\" font-size=\"15\">{}</text>\n",
        esc(title)
    );
    let xs: Vec<f64> = samples.iter().map(|s| s.t).collect();
    let eps: Vec<f64> = samples.iter().map(|s| s.events_per_sec).collect();
    let p99: Vec<f64> = samples.iter().map(|s| s.p99_ms).collect();
    let rss: Vec<f64> = samples
        .iter()
        .map(|s| s.rss_bytes as f64 / 1048576.0)
        .collect();
    let lag: Vec<f64> = samples.iter().map(|s| s.unindexed_events as f64).collect();
    let y1 = TOP + GAP / 2.0;
    panel(
        &mut o,
        y1,
        "ingest throughput",
        "events/s",
        &xs,
        &eps,
        "#1f77b4",
    );
    panel(
        &mut o,
        y1 + PANEL_H + GAP,
        "p99 append-to-durable latency (per sample period)",
        "ms",
        &xs,
        &p99,
        "#d62728",
    );
    panel(
        &mut o,
        y1 + 2.0 * (PANEL_H + GAP),
        "resident memory of the process",
        "MiB",
        &xs,
        &rss,
        "#2ca02c",
    );
    panel(
        &mut o,
        y1 + 3.0 * (PANEL_H + GAP),
        "index lag: events in sealed segments not yet indexed",
        "events",
        &xs,
        &lag,
        "#9467bd",
    );
    if !seal_lag.is_empty() {
        let (xs, ys): (Vec<f64>, Vec<f64>) = seal_lag.iter().copied().unzip();
        panel(
            &mut o,
            y1 + 4.0 * (PANEL_H + GAP),
            "index lag: seal to index of each sealed segment (at its seal)",
            "ms",
            &xs,
            &ys,
            "#8c564b",
        );
    }
    o.push_str("</svg>\n");
    o
}

/// The SVG text of a full-text lag plot (`--search-eps` with
/// `--search-plot`): `(t seconds, events behind, seconds behind)` per
/// sample, through ingest and the catch-up after it.
pub fn lag_svg(title: &str, samples: &[(f64, f64, f64)]) -> String {
    let h = TOP + 2.0 * (PANEL_H + GAP);
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{LEFT}\" y=\"20\" font-size=\"15\">{}</text>\n",
        esc(title)
    );
    let xs: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let events: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let secs: Vec<f64> = samples.iter().map(|s| s.2).collect();
    let y1 = TOP + GAP / 2.0;
    panel(
        &mut o,
        y1,
        "full-text search lag: events appended, not yet searchable",
        "events",
        &xs,
        &events,
        "#9467bd",
    );
    panel(
        &mut o,
        y1 + PANEL_H + GAP,
        "full-text search lag: age of the oldest unsearchable event",
        "seconds",
        &xs,
        &secs,
        "#d62728",
    );
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn axis_labels_tell_the_quarter_ticks_apart() {
        let ticks = |max: f64| -> Vec<String> {
            (0..=4)
                .map(|i| super::fmt_val(max * i as f64 / 4.0))
                .collect()
        };
        assert_eq!(ticks(2000.0), ["0.00", "500", "1k", "1.5k", "2k"]);
        assert_eq!(ticks(50_000.0), ["0.00", "12.5k", "25k", "37.5k", "50k"]);
        assert_eq!(ticks(2.5e6), ["0.00", "625k", "1.25M", "1.88M", "2.5M"]);
        assert_eq!(ticks(100.0), ["0.00", "25", "50", "75", "100"]);
        assert_eq!(super::fmt_val(2.5), "2.50");
    }

    #[test]
    fn lag_plot_has_both_panels_and_escapes_its_title() {
        let s = super::lag_svg("a < b", &[(0.0, 0.0, 0.0), (1.0, 500.0, 0.5)]);
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("a &lt; b"));
        assert!(s.ends_with("</svg>\n"));
    }
}
