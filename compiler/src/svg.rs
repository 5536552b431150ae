//! Small, deterministic SVG plots for reports (no dependency: the output is a string, and the
//! same numbers always give the same bytes).

use std::fmt::Write;

const W: f64 = 960.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const COLORS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A "nice" upper bound for an axis.
fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
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

fn header(s: &mut String, h: f64, title: &str) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" font-size="14" text-anchor="middle">{}</text>"#,
        W / 2.0,
        esc(title)
    );
}

/// One panel of bars per series (each with its own axis), bars labelled by `labels`.
pub fn bars(title: &str, labels: &[String], series: &[(&str, &[f64])]) -> String {
    let label_h = 110.0;
    let h = 30.0 + series.len() as f64 * (PANEL_H + 10.0) + label_h;
    let mut s = String::new();
    header(&mut s, h, title);
    let n = labels.len().max(1) as f64;
    let slot = (W - LEFT - RIGHT) / n;
    for (pi, (name, vals)) in series.iter().enumerate() {
        let top = 30.0 + pi as f64 * (PANEL_H + 10.0);
        let bottom = top + PANEL_H - 10.0;
        let max = nice_max(vals.iter().copied().fold(0.0, f64::max));
        let color = COLORS[pi % COLORS.len()];
        for t in 0..=4 {
            let v = max * t as f64 / 4.0;
            let y = bottom - (bottom - top - 10.0) * t as f64 / 4.0;
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
                W - RIGHT
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 4.0,
                y + 4.0,
                fmt_num(v)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{:.1}" fill="{color}">{}</text>"#,
            top + 2.0,
            esc(name)
        );
        for (i, &v) in vals.iter().enumerate() {
            let bh = if max > 0.0 { (bottom - top - 10.0) * v / max } else { 0.0 };
            let x = LEFT + i as f64 * slot + slot * 0.1;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{color}"><title>{}: {}</title></rect>"#,
                bottom - bh,
                (slot * 0.8).max(0.5),
                esc(labels.get(i).map_or("", String::as_str)),
                fmt_num(v)
            );
        }
    }
    let base = 30.0 + series.len() as f64 * (PANEL_H + 10.0);
    for (i, l) in labels.iter().enumerate() {
        let x = LEFT + (i as f64 + 0.5) * slot;
        let short: String =
            l.chars().rev().take(24).collect::<Vec<_>>().into_iter().rev().collect();
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{base:.1}" font-size="9" text-anchor="end" transform="rotate(-60 {x:.1} {base:.1})">{}</text>"#,
            esc(&short)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Lines over a shared x axis: `series` = (name, y per x); `None` leaves a gap.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    xs: &[f64],
    series: &[(String, Vec<Option<f64>>)],
    y_range: (f64, f64),
) -> String {
    let h = 40.0 + PANEL_H * 1.6 + 60.0;
    let mut s = String::new();
    header(&mut s, h, title);
    let (top, bottom) = (40.0, 40.0 + PANEL_H * 1.6);
    let right = W - RIGHT - 170.0;
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let xspan = if x1 > x0 { x1 - x0 } else { 1.0 };
    let (y0, y1) = y_range;
    let px = |x: f64| LEFT + (right - LEFT) * (x - x0) / xspan;
    let py = |y: f64| bottom - (bottom - top) * ((y - y0) / (y1 - y0)).clamp(0.0, 1.0);
    for t in 0..=5 {
        let v = y0 + (y1 - y0) * t as f64 / 5.0;
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 4.0,
            y + 4.0,
            fmt_num(v)
        );
    }
    for &x in xs {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            px(x),
            bottom + 16.0,
            fmt_num(x)
        );
    }
    axis_labels(&mut s, (x_label, y_label), right, (top, bottom));
    for (si, (name, ys)) in series.iter().enumerate() {
        let color = COLORS[si % COLORS.len()];
        let mut d = String::new();
        let mut pen_up = true;
        for (&x, y) in xs.iter().zip(ys) {
            match y {
                Some(y) => {
                    let _ =
                        write!(d, "{}{:.1},{:.1} ", if pen_up { "M" } else { "L" }, px(x), py(*y));
                    pen_up = false;
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{}: {}</title></circle>"#,
                        px(x),
                        py(*y),
                        esc(name),
                        fmt_num(*y)
                    );
                }
                None => pen_up = true,
            }
        }
        let _ = writeln!(
            s,
            r#"<path d="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            d.trim_end()
        );
        let ly = top + 14.0 * si as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="12" height="4" fill="{color}"/>"#,
            right + 14.0,
            ly - 4.0
        );
        let _ = writeln!(s, r#"<text x="{:.1}" y="{ly:.1}">{}</text>"#, right + 30.0, esc(name));
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// A step plot of equal bins over `0 ..= x_max`, filled below: bin `i` covers
/// `[i, i + 1) · x_max / ys.len()` at height `ys[i]`, on a y axis from 0 to `y_max`.
pub fn steps(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_max: f64,
    ys: &[f64],
    y_max: f64,
) -> String {
    let h = 40.0 + PANEL_H + 60.0;
    let mut s = String::new();
    header(&mut s, h, title);
    let (top, bottom, right) = (40.0, 40.0 + PANEL_H, W - RIGHT);
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let px = |x: f64| LEFT + (right - LEFT) * x / x_max;
    let py = |y: f64| bottom - (bottom - top) * (y / y_max).clamp(0.0, 1.0);
    for t in 0..=4 {
        let v = y_max * t as f64 / 4.0;
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 4.0,
            y + 4.0,
            fmt_num(v)
        );
    }
    for t in 0..=5 {
        let x = x_max * t as f64 / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            px(x),
            bottom + 16.0,
            fmt_num(x)
        );
    }
    axis_labels(&mut s, (x_label, y_label), right, (top, bottom));
    let dx = x_max / ys.len().max(1) as f64;
    let mut d = format!("M{:.1},{bottom:.1} ", px(0.0));
    for (i, &y) in ys.iter().enumerate() {
        let _ = write!(
            d,
            "L{:.1},{:.1} L{:.1},{:.1} ",
            px(i as f64 * dx),
            py(y),
            px((i + 1) as f64 * dx),
            py(y)
        );
    }
    let _ = write!(d, "L{:.1},{bottom:.1} Z", px(ys.len() as f64 * dx));
    let _ = writeln!(
        s,
        r#"<path d="{d}" fill="{}" fill-opacity="0.35" stroke="{}" stroke-width="1.5"/>"#,
        COLORS[0], COLORS[0]
    );
    s.push_str("</svg>\n");
    s
}

/// Complete SVG documents (as the functions of this module write them) stacked vertically
/// into one.
pub fn stack(parts: &[String]) -> String {
    let height = |p: &str| -> f64 {
        let first = p.lines().next().unwrap_or("");
        first
            .split(" height=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let total: f64 = parts.iter().map(|p| height(p)).sum();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total}" viewBox="0 0 {W} {total}">"#
    );
    let mut y = 0.0;
    for p in parts {
        s.push_str(&p.replacen("<svg ", &format!("<svg y=\"{y}\" "), 1));
        y += height(p);
    }
    s.push_str("</svg>\n");
    s
}

/// One group of points of a [`scatter`] plot.
pub struct ScatterSeries {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Points (x, y) in groups, each its own colour, with an optional `frontier` drawn as a line
/// through its points in x order (a Pareto front); `x_ticks` names tick positions when the x
/// axis is a category (`None`: numbers at five ticks).
pub fn scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[ScatterSeries],
    frontier: &[(f64, f64)],
    x_ticks: Option<&[(f64, String)]>,
) -> String {
    let h = 40.0 + PANEL_H * 1.6 + 60.0;
    let mut s = String::new();
    header(&mut s, h, title);
    let (top, bottom) = (40.0, 40.0 + PANEL_H * 1.6);
    let right = W - RIGHT - 170.0;
    let all = || series.iter().flat_map(|g| g.points.iter().copied());
    let (mut x0, mut x1) =
        all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, _)| (a.min(x), b.max(x)));
    let (mut y0, mut y1) =
        all().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, y)| (a.min(y), b.max(y)));
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = |lo: f64, hi: f64| {
        let d = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
        (lo - d, hi + d)
    };
    let ((x0, x1), (y0, y1)) = (pad(x0, x1), pad(y0, y1));
    let px = |x: f64| LEFT + (right - LEFT) * (x - x0) / (x1 - x0);
    let py = |y: f64| bottom - (bottom - top) * (y - y0) / (y1 - y0);
    for t in 0..=5 {
        let v = y0 + (y1 - y0) * t as f64 / 5.0;
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 4.0,
            y + 4.0,
            fmt_num(v)
        );
    }
    let ticks: Vec<(f64, String)> = match x_ticks {
        Some(t) => t.to_vec(),
        None => (0..=5)
            .map(|t| {
                let v = x0 + (x1 - x0) * t as f64 / 5.0;
                (v, fmt_num(v))
            })
            .collect(),
    };
    for (x, label) in &ticks {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            px(*x),
            bottom + 16.0,
            esc(label)
        );
    }
    axis_labels(&mut s, (x_label, y_label), right, (top, bottom));
    if frontier.len() > 1 {
        let mut f = frontier.to_vec();
        f.sort_by(|a, b| a.0.total_cmp(&b.0));
        let d: Vec<String> = f
            .iter()
            .enumerate()
            .map(|(i, (x, y))| {
                format!("{}{:.1},{:.1}", if i == 0 { "M" } else { "L" }, px(*x), py(*y))
            })
            .collect();
        let _ = writeln!(
            s,
            r##"<path d="{}" fill="none" stroke="#444" stroke-width="1.5" stroke-dasharray="4 3"/>"##,
            d.join(" ")
        );
    }
    for (si, g) in series.iter().enumerate() {
        let color = COLORS[si % COLORS.len()];
        for &(x, y) in &g.points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}" fill-opacity="0.8"><title>{}: ({}, {})</title></circle>"#,
                px(x),
                py(y),
                esc(&g.name),
                fmt_num(x),
                fmt_num(y)
            );
        }
        let ly = top + 14.0 * si as f64;
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
            right + 20.0,
            ly - 3.0
        );
        let _ = writeln!(s, r#"<text x="{:.1}" y="{ly:.1}">{}</text>"#, right + 30.0, esc(&g.name));
    }
    if frontier.len() > 1 {
        let ly = top + 14.0 * series.len() as f64;
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#444" stroke-dasharray="4 3"/>"##,
            right + 12.0,
            ly - 3.0,
            right + 26.0,
            ly - 3.0
        );
        let _ = writeln!(s, r#"<text x="{:.1}" y="{ly:.1}">Pareto front</text>"#, right + 30.0);
    }
    s.push_str("</svg>\n");
    s
}

/// The x label centred under the plot area and the y label rotated along its left edge.
fn axis_labels(
    s: &mut String,
    (x_label, y_label): (&str, &str),
    right: f64,
    (top, bottom): (f64, f64),
) {
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (LEFT + right) / 2.0,
        bottom + 36.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        (top + bottom) / 2.0,
        (top + bottom) / 2.0,
        esc(y_label)
    );
}
