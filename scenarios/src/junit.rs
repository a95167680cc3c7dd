//! Reports as JUnit XML, the format CI systems (GitHub Actions, GitLab, Jenkins) read to show
//! which case failed: a test suite per scenario, a test case per check of a step (a step that
//! could not be carried out is an error case of its own, a skipped step a skipped case, a
//! scenario whose setup failed one error case `setup`). A failure's message is the expected and
//! the actual value; its text and the case's output carry the step's log lines and, in the guest
//! mode, each guest's console tail.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::report::{ScenarioReport, StepReport};

/// The JUnit document for `reports`, its root named `name` (e.g. `sriov-emu scenarios`).
pub fn render(name: &str, reports: &[ScenarioReport]) -> String {
    let mut doc = Report::new(name);
    let mut total = Duration::ZERO;
    for r in reports {
        let time = Duration::from_secs_f64(r.wall_ms.max(0.0) / 1e3);
        total += time;
        doc.add_test_suite(suite(r, time));
    }
    doc.set_time(total);
    doc.to_string()
        .expect("quick-junit writes any report it was given")
}

fn suite(r: &ScenarioReport, time: Duration) -> TestSuite {
    let mut suite = TestSuite::new(r.name.as_str());
    suite.set_time(time);
    suite.add_property(("file", r.file.as_str()));
    for g in &r.guests {
        suite.add_property((format!("guest.{}", g.endpoint), g.line()));
    }
    let consoles = consoles(r);
    if let Some(e) = &r.setup_error {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status
            .set_message(first_line(e))
            .set_type("setup")
            .set_description(format!("{e}\n{consoles}"));
        let mut case = TestCase::new("setup", status);
        case.set_classname(r.name.as_str());
        suite.add_test_case(case);
    }
    for step in &r.steps {
        for case in step_cases(r, step, &consoles) {
            suite.add_test_case(case);
        }
    }
    if !consoles.is_empty() {
        suite.set_system_out(consoles);
    }
    suite
}

/// The cases of one step: each check, or the step itself when it was skipped, could not be
/// carried out, or checked nothing.
fn step_cases(r: &ScenarioReport, step: &StepReport, consoles: &str) -> Vec<TestCase> {
    let title = format!("step {}: {}", step.index + 1, step.action);
    let context = step_context(step);
    let case = |name: String, status: TestCaseStatus| {
        let mut case = TestCase::new(name, status);
        case.set_classname(r.name.as_str());
        case
    };
    let mut cases = Vec::new();
    if let Some(why) = &step.skipped {
        let mut status = TestCaseStatus::skipped();
        status.set_message(why.as_str());
        cases.push(case(title.clone(), status));
        return cases;
    }
    if let Some(e) = &step.error {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status
            .set_message(first_line(e))
            .set_type("step")
            .set_description(format!("{e}\n{context}{consoles}"));
        cases.push(case(title.clone(), status));
    }
    for c in &step.checks {
        let status = if c.pass {
            TestCaseStatus::success()
        } else {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_message(format!(
                    "{}: expected {}, got {}",
                    c.what, c.expected, c.actual
                ))
                .set_type("check")
                .set_description(format!(
                    "expected: {}\nactual:   {}\n{context}{consoles}",
                    c.expected, c.actual
                ));
            status
        };
        cases.push(case(format!("{title}: {}", c.what), status));
    }
    if step.error.is_none() && step.checks.is_empty() {
        cases.push(case(title, TestCaseStatus::success()));
    }
    cases
}

/// What happened in the step and its log lines.
fn step_context(step: &StepReport) -> String {
    let mut out = String::new();
    for line in &step.happened {
        out += &format!("{line}\n");
    }
    for line in &step.logs {
        out += &format!("log: {line}\n");
    }
    out
}

/// Each guest's console tail (the guest mode), headed by what it booted.
fn consoles(r: &ScenarioReport) -> String {
    let mut out = String::new();
    for g in &r.guests {
        out += &format!(
            "--- {} (console log {}), last lines:\n{}\n",
            g.line(),
            g.log,
            g.console_tail
        );
    }
    out
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Check, GuestInfo};

    fn step(index: usize, checks: Vec<Check>) -> StepReport {
        StepReport {
            index,
            action: format!("action {index}"),
            happened: vec!["vf0 → vf1".into()],
            frames: Vec::new(),
            counters: Vec::new(),
            logs: vec!["PF agent: refused".into()],
            cables: Vec::new(),
            pass: checks.iter().all(|c| c.pass),
            checks,
            error: None,
            skipped: None,
            faults: Vec::new(),
        }
    }

    fn check(what: &str, pass: bool) -> Check {
        Check {
            what: what.into(),
            expected: "true".into(),
            actual: if pass { "true" } else { "false" }.into(),
            pass,
        }
    }

    #[test]
    fn each_check_is_a_case_and_a_failed_one_says_expected_and_actual() {
        let mut skipped = step(2, Vec::new());
        skipped.skipped = Some("a crafted frame from a guest".into());
        let mut broken = step(3, Vec::new());
        broken.error = Some("guest vf0: `ping` gave no answer".into());
        let report = ScenarioReport {
            name: "s<&>".into(),
            file: "s.toml".into(),
            description: String::new(),
            reproduces: String::new(),
            setup_error: None,
            card: Vec::new(),
            endpoints: Vec::new(),
            steps: vec![
                step(0, vec![check("answered", true), check("reply", false)]),
                step(1, Vec::new()),
                skipped,
                broken,
            ],
            faults: Vec::new(),
            pass: false,
            wall_ms: 1500.0,
            scenario_ms: 0.0,
            guests: vec![GuestInfo {
                endpoint: "vf0".into(),
                kernel: Some("6.1.0-50-amd64".into()),
                modules: Vec::new(),
                log: "vf0.log".into(),
                console_tail: "igbvf: Link is Up\u{1b}[0m".into(),
            }],
        };
        let xml = render("sriov-emu", &[report]);
        assert!(
            xml.contains(
                r#"<testsuite name="s&lt;&amp;&gt;" tests="5" skipped="1" errors="1" failures="1""#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<testcase name="step 1: action 0: answered" classname="s&lt;&amp;&gt;""#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<failure message="reply: expected true, got false" type="check">"#),
            "{xml}"
        );
        assert!(xml.contains("igbvf: Link is Up"), "the console tail: {xml}");
        assert!(
            xml.contains(r#"<skipped message="a crafted frame from a guest"/>"#),
            "{xml}"
        );
        assert!(!xml.contains('\u{1b}'), "no control characters in XML");
    }
}
