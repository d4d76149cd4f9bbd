//! Server-rendered SVG bar charts: no JavaScript, no inline styles (colours come from the
//! stylesheet through classes), labels escaped here. Every chart on a page has a table of the
//! same numbers beneath it for screen readers.

/// One bar: its label (x axis) and value.
pub struct Bar {
    pub label: String,
    pub value: f64,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A bar chart as SVG markup, safe to embed as it is.
pub fn bar_chart(title: &str, bars: &[Bar]) -> String {
    const W: f64 = 600.0;
    const H: f64 = 180.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 28.0;
    const LEFT: f64 = 44.0;
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let plot_h = H - TOP - BOTTOM;
    let slot = if bars.is_empty() { W - LEFT } else { (W - LEFT) / bars.len() as f64 };
    let label_every = (bars.len() / 8).max(1);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{t}</title>",
        t = escape(title)
    );
    svg.push_str(&format!("<line class=\"axis\" x1=\"{LEFT}\" y1=\"{y}\" x2=\"{W}\" y2=\"{y}\"/>", y = H - BOTTOM));
    svg.push_str(&format!("<text x=\"2\" y=\"{}\">{}</text>", TOP + 4.0, escape(&super::grouped(max.round() as i64))));
    svg.push_str(&format!("<text x=\"2\" y=\"{}\">0</text>", H - BOTTOM));
    for (i, bar) in bars.iter().enumerate() {
        let h = if max > 0.0 { bar.value / max * plot_h } else { 0.0 };
        // A few groups get bars of a sensible width, not one bar across the chart.
        let width = (slot * 0.8).clamp(1.0, 48.0);
        let x = LEFT + i as f64 * slot + (slot - width) / 2.0;
        svg.push_str(&format!(
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}: {}</title></rect>",
            H - BOTTOM - h,
            width,
            escape(&bar.label),
            escape(&super::grouped(bar.value.round() as i64)),
        ));
        if i % label_every == 0 {
            let short: String = bar.label.chars().take(12).collect();
            svg.push_str(&format!("<text x=\"{x:.1}\" y=\"{:.1}\">{}</text>", H - 8.0, escape(&short)));
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_bars_scaled() {
        let svg = bar_chart("t", &[Bar { label: "<x>".into(), value: 10.0 }, Bar { label: "b".into(), value: 5.0 }]);
        assert!(svg.contains("&lt;x&gt;"));
        assert!(!svg.contains("<x>"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(!svg.contains("style="));
    }
}
