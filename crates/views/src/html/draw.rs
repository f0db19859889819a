//! A chart drawn: the HTML `<figure>` with its caption and legend, and the
//! `<svg>` inside it, drawn by plotters' SVG backend (axes and grid, warm-up
//! shading, phase-start and stop lines, then the series). What is drawn is
//! the chart model's; the page around it is `page`'s.

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;

use super::axis::{byte_step, log_keys};
use super::chart::{Chart, MARK, SHADE, STOP, XAxis, YAxis};
use super::page::esc;

/// Size of every chart, in SVG pixels (the page scales them down to fit).
const WIDTH: u32 = 960;
const HEIGHT: u32 = 300;

/// A chart with its caption and legend. The legend is HTML, so it wraps
/// with many series and keeps the SVG's colours to the data alone.
pub(super) fn figure(c: &Chart) -> String {
    let mut out = format!(
        "<figure class=\"chart\" id=\"chart-{}\">\n<figcaption>{}</figcaption>\n",
        esc(&c.id),
        esc(&c.title)
    );
    match svg(c) {
        Ok(svg) => out.push_str(&svg),
        Err(e) => {
            let _ = writeln!(out, "<p class=\"reason\">chart failed: {}</p>", esc(&e));
        }
    }
    out.push_str("<ul class=\"legend\">\n");
    for s in &c.series {
        let RGBColor(r, g, b) = s.color;
        let color = format!("#{r:02X}{g:02X}{b:02X}");
        let _ = writeln!(
            out,
            "<li class=\"series\" data-color=\"{color}\"><span class=\"swatch{}\" \
             style=\"border-top-color: {color}\"></span>{}</li>",
            if s.dashed { " dashed" } else { "" },
            esc(&s.name)
        );
    }
    if !c.marks.shaded.is_empty() {
        out.push_str("<li><span class=\"swatch shade\"></span>warm-up</li>\n");
    }
    if !c.marks.lines.is_empty() {
        out.push_str("<li><span class=\"swatch mark\"></span>phase start</li>\n");
    }
    if !c.marks.stops.is_empty() {
        out.push_str("<li><span class=\"swatch stop\"></span>phase stopped</li>\n");
    }
    out.push_str("</ul>\n</figure>\n");
    out
}

/// The chart as an `<svg>` element, drawn by plotters.
fn svg(c: &Chart) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (x0, x1) = c.x_range;
        let (y0, y1) = c.y_range();
        match (c.x_axis, c.y_axis) {
            (XAxis::Percentile, _) => {
                let decades = x1.log10().round() as i32;
                let keys: Vec<f64> = (0..=decades).map(|n| 10f64.powi(n)).collect();
                draw(&root, c, (x0..x1).log_scale().with_key_points(keys), y0..y1)?;
            }
            (XAxis::Seconds, YAxis::LatencyLog) => {
                let keys = log_keys(y0, y1);
                draw(&root, c, x0..x1, (y0..y1).log_scale().with_key_points(keys))?;
            }
            (XAxis::Seconds, YAxis::Bytes | YAxis::BytesPerSecond) => {
                draw(&root, c, x0..x1, (y0..y1).step(byte_step(y1)))?;
            }
            (XAxis::Seconds, _) => draw(&root, c, x0..x1, y0..y1)?,
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn draw<X, Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    c: &Chart,
    x: X,
    y: Y,
) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
    let (y_lo, y_hi) = c.y_range();
    let mut chart = ChartBuilder::on(root)
        .margin(10)
        .margin_right(30)
        .x_label_area_size(44)
        .y_label_area_size(96)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    let x_label = |v: &f64| c.x_label(*v);
    let y_label = |v: &f64| c.y_label(*v);
    chart
        .configure_mesh()
        .x_desc(c.x_desc.as_str())
        .y_desc(c.y_desc.as_str())
        .x_labels(12)
        .y_labels(7)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .bold_line_style(BLACK.mix(0.1))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(
            c.marks
                .shaded
                .iter()
                .map(|&(a, b)| Rectangle::new([(a, y_lo), (b, y_hi)], SHADE.mix(0.7).filled())),
        )
        .map_err(err)?;
    let label = ("sans-serif", 14).into_font().color(&MARK);
    for (at, name) in &c.marks.lines {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(*at, y_lo), (*at, y_hi)],
                MARK.stroke_width(1),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((*at, y_hi)) + Text::new(name.clone(), (5, 4), label.clone()),
            ))
            .map_err(err)?;
    }
    let stop_label = ("sans-serif", 14).into_font().color(&STOP);
    for (at, name) in &c.marks.stops {
        chart
            .draw_series(DashedLineSeries::new(
                [(*at, y_lo), (*at, y_hi)],
                6,
                4,
                STOP.stroke_width(2),
            ))
            .map_err(err)?;
        // Below the phase-start labels, so the two never overlap; left of
        // the line in the chart's right half, so the label stays inside.
        let (x0, x1) = c.x_range;
        let dx = if (at - x0) > (x1 - x0) / 2.0 {
            -(name.chars().count() as i32 * 8 + 5)
        } else {
            5
        };
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((*at, y_hi))
                    + Text::new(name.clone(), (dx, 22), stop_label.clone()),
            ))
            .map_err(err)?;
    }
    for s in &c.series {
        let style = s.color.stroke_width(2);
        for seg in &s.segments {
            let points = seg.iter().copied();
            if seg.len() == 1 {
                chart
                    .draw_series(points.map(|p| Circle::new(p, 3, s.color.filled())))
                    .map_err(err)?;
            } else if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(points, 7, 4, style))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(points, style))
                    .map_err(err)?;
            }
        }
    }
    Ok(())
}
