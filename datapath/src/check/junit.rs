//! JUnit XML for CI systems: one `<testsuite name="xsw test">`, one
//! `<testcase>` per scenario, a `<failure>` holding the diff of each failed
//! one.

use std::fmt::Write as _;

use super::{ScenarioResult, Status};

/// `s` escaped for XML text and attribute values; characters XML 1.0 cannot
/// carry at all (most control characters) become `?`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The JUnit XML document for `results` (in their order). A scenario's
/// name is its directory as found; an updated one counts as passed.
pub fn to_xml(results: &[ScenarioResult]) -> String {
    let failures = results
        .iter()
        .filter(|r| r.status == Status::Failed)
        .count();
    let total: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuite name=\"xsw test\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">",
        results.len()
    );
    for r in results {
        let name = escape(&r.dir.display().to_string());
        let time = r.elapsed.as_secs_f64();
        if r.status == Status::Failed {
            let first = r.lines.first().map_or("failed", String::as_str);
            let _ = writeln!(
                x,
                "  <testcase name=\"{name}\" classname=\"xsw test\" time=\"{time:.3}\">\n    <failure message=\"{}\">{}</failure>\n  </testcase>",
                escape(first),
                escape(&r.lines.join("\n"))
            );
        } else {
            let _ = writeln!(
                x,
                "  <testcase name=\"{name}\" classname=\"xsw test\" time=\"{time:.3}\"/>"
            );
        }
    }
    x.push_str("</testsuite>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn escapes_markup_quotes_and_control_characters() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>\u{1}\n"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;?\n"
        );
    }

    #[test]
    fn one_testcase_per_scenario_and_a_failure_with_the_diff() {
        let results = vec![
            ScenarioResult {
                dir: PathBuf::from("pcaps/ok"),
                status: Status::Passed,
                lines: vec![],
                elapsed: Duration::from_millis(30),
                output: None,
            },
            ScenarioResult {
                dir: PathBuf::from("pcaps/<bad>"),
                status: Status::Failed,
                lines: vec![
                    "p2 frame 3: vlan_vid 10, expected 20".into(),
                    "ports[p2].drops.x: 1, expected \"<none>\"".into(),
                ],
                elapsed: Duration::from_millis(1500),
                output: None,
            },
        ];
        let x = to_xml(&results);
        assert!(x.contains(
            "<testsuite name=\"xsw test\" tests=\"2\" failures=\"1\" errors=\"0\" time=\"1.530\">"
        ));
        assert!(x.contains("<testcase name=\"pcaps/ok\" classname=\"xsw test\" time=\"0.030\"/>"));
        assert!(x.contains("<testcase name=\"pcaps/&lt;bad&gt;\""));
        assert!(x.contains(
            "<failure message=\"p2 frame 3: vlan_vid 10, expected 20\">p2 frame 3: vlan_vid 10, expected 20\nports[p2].drops.x: 1, expected &quot;&lt;none&gt;&quot;</failure>"
        ));
        assert_eq!(x.matches("<testcase ").count(), 2);
        assert!(x.ends_with("</testsuite>\n"));
    }
}
