//! Charts drawn as inline SVG, so the report needs no script library and no network: line,
//! area and stacked-area charts over X/Y points, bar histograms and pies.
//!
//! Each chart is an HTML `<figure>` holding the `<svg>` (sized by its `viewBox`, so it scales
//! with the page) and an HTML legend, which wraps better than SVG text. The drawing uses
//! presentation attributes, not the page's CSS, so a chart copied out of the page still looks
//! the same. Coordinates are
//! written with one decimal: a 1000-point line costs about 11 KB.

use std::fmt::Write as _;

use super::html::esc;

/// Colours that stay apart on white and for the common colour-vision deficiencies (Tableau 10).
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 62.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 42.0;
/// Points drawn per series at most; longer series (complete output) are thinned by stride.
const MAX_POINTS: usize = 2000;

pub(super) fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// One named line: (x, y) points in drawing order.
#[derive(Debug, Clone, Default)]
pub(super) struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    /// Lines only.
    Lines,
    /// Each series filled down to zero, translucent.
    Area,
    /// Series stacked on each other by point index (they must share their X values).
    Stacked,
}

#[derive(Debug, Clone)]
pub(super) struct XyChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub style: Style,
    pub series: Vec<Series>,
    /// Fixed X range (the workload's time axis); otherwise the data's.
    pub x_range: Option<(f64, f64)>,
}

/// Maps data coordinates to the SVG canvas.
#[derive(Debug, Clone, Copy)]
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        TOP + (1.0 - (y - self.y0) / (self.y1 - self.y0)) * (HEIGHT - TOP - BOTTOM)
    }

    fn point(&self, (x, y): (f64, f64)) -> String {
        format!("{:.1},{:.1}", self.px(x), self.py(y))
    }
}

/// A figure with a line, area or stacked-area chart; "No data." without finite points.
pub(super) fn xy(chart: &XyChart) -> String {
    let series: Vec<Series> = chart.series.iter().map(thin).collect();
    let series = match chart.style {
        Style::Stacked => stack(&series),
        Style::Lines | Style::Area => series.into_iter().map(|s| (s, Vec::new())).collect(),
    };
    let all = || series.iter().flat_map(|(s, _)| s.points.iter().copied());
    let Some(frame) = frame(all(), chart.x_range) else {
        return empty(chart.title);
    };
    let mut svg = open_svg(chart.title);
    axes(&mut svg, &frame, chart.x_label, chart.y_label);
    for (i, (s, base)) in series.iter().enumerate() {
        draw_series(&mut svg, &frame, chart.style, colour(i), s, base);
    }
    svg.push_str("</svg>");
    let names: Vec<(String, String)> = chart
        .series
        .iter()
        .map(|s| (s.name.clone(), String::new()))
        .collect();
    figure(chart.title, &svg, &legend(&names))
}

/// Keeps at most [`MAX_POINTS`] finite points.
fn thin(s: &Series) -> Series {
    let finite: Vec<(f64, f64)> = s
        .points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let stride = finite.len().div_ceil(MAX_POINTS).max(1);
    Series {
        name: s.name.clone(),
        points: finite.into_iter().step_by(stride).collect(),
    }
}

/// Each series' tops, with the tops of the series below as its base.
fn stack(series: &[Series]) -> Vec<(Series, Vec<(f64, f64)>)> {
    let mut below: Vec<(f64, f64)> = Vec::new();
    let mut out = Vec::new();
    for s in series {
        let base: Vec<(f64, f64)> = s
            .points
            .iter()
            .enumerate()
            .map(|(i, &(x, _))| (x, below.get(i).map_or(0.0, |p| p.1)))
            .collect();
        let tops: Vec<(f64, f64)> = s
            .points
            .iter()
            .zip(&base)
            .map(|(&(x, y), &(_, b))| (x, b + y))
            .collect();
        below = tops.clone();
        out.push((
            Series {
                name: s.name.clone(),
                points: tops,
            },
            base,
        ));
    }
    out
}

/// Data ranges: X from the data or fixed, Y from min(0, data) to a round number above it.
fn frame(points: impl Iterator<Item = (f64, f64)>, x_range: Option<(f64, f64)>) -> Option<Frame> {
    let mut b = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64, f64::NEG_INFINITY);
    let mut any = false;
    for (x, y) in points {
        any = true;
        b = (b.0.min(x), b.1.max(x), b.2.min(y), b.3.max(y));
    }
    if !any {
        return None;
    }
    let (mut x0, mut x1) = x_range
        .filter(|(a, z)| a.is_finite() && z.is_finite())
        .unwrap_or((b.0, b.1));
    if x1 <= x0 {
        (x0, x1) = (x0 - 0.5, x0 + 0.5);
    }
    let (y0, mut y1) = (b.2, b.3.max(b.2));
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let y1 = ticks(y0, y1)
        .last()
        .copied()
        .filter(|&t| t >= y1)
        .unwrap_or(y1);
    Some(Frame { x0, x1, y0, y1 })
}

/// About five round tick values covering `[lo, hi]` (steps of 1, 2 or 5 × 10^k).
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    if !span.is_finite() || span <= 0.0 {
        return vec![lo];
    }
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut t = first;
    while out.len() < 12 {
        if t >= lo - step * 1e-9 {
            out.push(t);
        }
        if t >= hi - step * 1e-9 {
            break;
        }
        t += step;
    }
    out
}

/// A compact number for tick labels and legends: at most 3 significant decimals.
pub(super) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    let decimals = if a == 0.0 || a >= 100.0 {
        0
    } else if a >= 1.0 {
        2
    } else {
        // 3 significant digits below 1.
        ((-a.log10()).floor() as usize + 3).min(9)
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn open_svg(title: &str) -> String {
    format!(
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    )
}

fn axes(svg: &mut String, f: &Frame, x_label: &str, y_label: &str) {
    let (left, right) = (LEFT, WIDTH - RIGHT);
    let (top, bottom) = (TOP, HEIGHT - BOTTOM);
    for t in ticks(f.y0, f.y1) {
        let y = f.py(t);
        let _ = write!(
            svg,
            "<line stroke=\"#eaeef2\" x1=\"{left}\" x2=\"{right}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text font-size=\"12\" fill=\"#57606a\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + 4.0,
            num(t)
        );
    }
    for t in ticks(f.x0, f.x1) {
        let x = f.px(t);
        let _ = write!(
            svg,
            "<line stroke=\"#8c959f\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{bottom}\" y2=\"{:.1}\"/>\
             <text font-size=\"12\" fill=\"#57606a\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bottom + 4.0,
            bottom + 16.0,
            num(t)
        );
    }
    let _ = write!(
        svg,
        "<path stroke=\"#8c959f\" fill=\"none\" d=\"M{left},{top}V{bottom}H{right}\"/>\
         <text font-size=\"13\" fill=\"#424a53\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text font-size=\"13\" fill=\"#424a53\" transform=\"translate(14,{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        (left + right) / 2.0,
        HEIGHT - 6.0,
        esc(x_label),
        (top + bottom) / 2.0,
        esc(y_label)
    );
}

fn draw_series(
    svg: &mut String,
    f: &Frame,
    style: Style,
    colour: &str,
    s: &Series,
    base: &[(f64, f64)],
) {
    if s.points.len() == 1 {
        let (x, y) = s.points[0];
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>",
            f.px(x),
            f.py(y)
        );
        return;
    }
    let line: Vec<String> = s.points.iter().map(|&p| f.point(p)).collect();
    let line = line.join(" ");
    match style {
        Style::Lines => {}
        Style::Area => {
            let zero = f.py(0.0f64.max(f.y0));
            let (first, last) = (s.points[0].0, s.points[s.points.len() - 1].0);
            let _ = write!(
                svg,
                "<polygon fill-opacity=\".35\" fill=\"{colour}\" points=\"{:.1},{zero:.1} {line} {:.1},{zero:.1}\"/>",
                f.px(first),
                f.px(last)
            );
        }
        Style::Stacked => {
            let under: Vec<String> = base.iter().rev().map(|&p| f.point(p)).collect();
            let _ = write!(
                svg,
                "<polygon fill-opacity=\".35\" fill=\"{colour}\" points=\"{line} {}\"/>",
                under.join(" ")
            );
        }
    }
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke-width=\"1.6\" stroke=\"{colour}\" points=\"{line}\"/>"
    );
}

/// A histogram: one bar per `(from, to, count)` bin.
pub(super) fn bars(title: &str, x_label: &str, y_label: &str, bins: &[(f64, f64, f64)]) -> String {
    let corners = bins
        .iter()
        .flat_map(|&(a, b, c)| [(a, 0.0), (b, c)])
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let Some(frame) = frame(corners, None) else {
        return empty(title);
    };
    let mut svg = open_svg(title);
    axes(&mut svg, &frame, x_label, y_label);
    let single = bins.len() == 1;
    for &(a, b, c) in bins {
        let (x0, x1) = if single {
            (LEFT + 20.0, WIDTH - RIGHT - 20.0)
        } else {
            (frame.px(a), frame.px(b))
        };
        let (top, bottom) = (frame.py(c), frame.py(0.0f64.max(frame.y0)));
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}–{}: {}</title></rect>",
            x0 + 0.5,
            (x1 - x0 - 1.0).max(0.5),
            (bottom - top).max(0.0),
            colour(0),
            num(a),
            num(b),
            num(c)
        );
    }
    svg.push_str("</svg>");
    figure(title, &svg, "")
}

/// A pie of the positive finite slices, with values and shares in the legend.
pub(super) fn pie(title: &str, slices: &[(String, f64)]) -> String {
    let total: f64 = slices
        .iter()
        .map(|s| s.1)
        .filter(|v| v.is_finite() && *v > 0.0)
        .sum();
    if total <= 0.0 {
        return empty(title);
    }
    let (cx, cy, r) = (110.0, 110.0, 100.0);
    let mut svg = format!(
        "<svg class=\"pie\" viewBox=\"0 0 220 220\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    let mut angle = -std::f64::consts::FRAC_PI_2;
    let mut names = Vec::new();
    for (i, (name, v)) in slices.iter().enumerate() {
        let v = if v.is_finite() && *v > 0.0 { *v } else { 0.0 };
        names.push((
            name.clone(),
            format!("{} ({:.1}%)", num(v), v * 100.0 / total),
        ));
        if v <= 0.0 {
            continue;
        }
        let share = v / total;
        if share >= 0.9999 {
            let _ = write!(
                svg,
                "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"{r}\" fill=\"{}\"/>",
                colour(i)
            );
            continue;
        }
        let end = angle + share * std::f64::consts::TAU;
        let _ = write!(
            svg,
            "<path fill=\"{}\" d=\"M{cx},{cy}L{:.1},{:.1}A{r},{r} 0 {} 1 {:.1},{:.1}Z\"/>",
            colour(i),
            cx + r * angle.cos(),
            cy + r * angle.sin(),
            u8::from(share > 0.5),
            cx + r * end.cos(),
            cy + r * end.sin()
        );
        angle = end;
    }
    svg.push_str("</svg>");
    figure(title, &svg, &legend(&names))
}

fn legend(entries: &[(String, String)]) -> String {
    if entries.len() < 2 && entries.iter().all(|e| e.1.is_empty()) {
        return String::new();
    }
    let mut out = String::from("<ul class=\"legend\">");
    for (i, (name, note)) in entries.iter().enumerate() {
        let _ = write!(
            out,
            "<li><span class=\"swatch\" style=\"background:{}\"></span>{}",
            colour(i),
            esc(name)
        );
        if !note.is_empty() {
            let _ = write!(out, " <span class=\"muted\">{}</span>", esc(note));
        }
        out.push_str("</li>");
    }
    out.push_str("</ul>");
    out
}

fn figure(title: &str, svg: &str, legend: &str) -> String {
    format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption>{svg}{legend}</figure>",
        esc(title)
    )
}

/// The figure of a chart without data, so the reader sees it was not forgotten.
pub(super) fn empty(title: &str) -> String {
    format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption><p class=\"muted\">No data.</p></figure>",
        esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.to_string(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.0, 0.37);
        assert!(t[0] == 0.0 && *t.last().unwrap_or(&0.0) >= 0.37, "{t:?}");
        assert_eq!(ticks(1.0, 1.0), [1.0]);
        assert_eq!(num(0.012345), "0.0123");
        assert_eq!(num(2.5), "2.5");
        assert_eq!(num(1234.6), "1235");
        assert_eq!(num(f64::NAN), "n/a");
    }

    #[test]
    fn charts_draw_and_survive_odd_data() {
        let s = vec![
            series("a", &[(0.0, 1.0), (1.0, 2.0)]),
            series("<b>", &[(0.0, 1.0), (1.0, f64::NAN)]),
        ];
        for style in [Style::Lines, Style::Area, Style::Stacked] {
            let html = xy(&XyChart {
                title: "t",
                x_label: "x",
                y_label: "y",
                style,
                series: s.clone(),
                x_range: None,
            });
            assert!(
                html.contains("<svg") && html.contains("&lt;b&gt;"),
                "{html}"
            );
        }
        let none = xy(&XyChart {
            title: "t",
            x_label: "",
            y_label: "",
            style: Style::Lines,
            series: vec![series("nan", &[(f64::NAN, 1.0)])],
            x_range: Some((0.0, 0.0)),
        });
        assert!(none.contains("No data."));
        assert!(bars("h", "s", "n", &[(1.0, 1.0, 5.0)]).contains("<rect"));
        assert!(pie("p", &[("x".into(), 1.0), ("y".into(), 0.0)]).contains("<circle"));
        assert!(pie("p", &[("x".into(), f64::NAN)]).contains("No data."));
        let two = pie("p", &[("x".into(), 1.0), ("y".into(), 3.0)]);
        assert_eq!(two.matches("<path").count(), 2);
    }
}
